/*
 * Test-only FreeSWITCH module (built by tests/freeswitch_fault.rs into its private instance's
 * module dir; never installed, never shipped): fault injection for the frame accounting in
 * src/host/freeswitch/watch.rs.
 *
 * API `sp_fault tap_only <uuid> set|get`: sets / reads the session flag SSF_MEDIA_BUG_TAP_ONLY,
 * the state FreeSWITCH's switch_core_media_bug_add can leave behind when a native tap is added
 * on another thread at the same moment as a READ_REPLACE bug (it decides the flag under the bug
 * list's lock and sets it after unlocking). With it set, switch_core_session_read_frame hands
 * every frame on without running any READ_REPLACE bug. The race itself cannot be forced from
 * outside; this writes its outcome.
 *
 * Copyright (C) the secure_pay authors. GPL-2.0-or-later.
 */
#include <switch.h>

SWITCH_MODULE_LOAD_FUNCTION(mod_sp_fault_load);
SWITCH_MODULE_DEFINITION(mod_sp_fault, mod_sp_fault_load, NULL, NULL);

/* The first fields of struct switch_core_session (src/include/private/switch_core_pvt.h, not
 * installed; the same in 1.10.12 and cc93a683). Checked against the public getters before any
 * write: a layout that does not match is refused. */
struct sp_session_head {
	switch_memory_pool_t *pool;
	switch_thread_t *thread;
	switch_thread_id_t thread_id;
	switch_endpoint_interface_t *endpoint_interface;
	switch_size_t id;
	uint32_t flags; /* switch_session_flag_t, an enum */
	switch_channel_t *channel;
};

#define SP_SSF_MEDIA_BUG_TAP_ONLY (1u << 10)

SWITCH_STANDARD_API(sp_fault_api)
{
	char *argv[4] = { 0 };
	char *dup = NULL;
	int argc = 0;
	switch_core_session_t *s = NULL;
	struct sp_session_head *h;

	if (!zstr(cmd) && (dup = strdup(cmd))) {
		argc = switch_separate_string(dup, ' ', argv, 4);
	}
	if (argc != 3 || strcmp(argv[0], "tap_only") || (strcmp(argv[2], "set") && strcmp(argv[2], "get"))) {
		stream->write_function(stream, "-ERR usage: sp_fault tap_only <uuid> set|get\n");
		goto end;
	}
	if (!(s = switch_core_session_locate(argv[1]))) {
		stream->write_function(stream, "-ERR no such channel\n");
		goto end;
	}
	h = (struct sp_session_head *) s;
	if (h->pool != switch_core_session_get_pool(s) || h->id != switch_core_session_get_id(s) ||
		h->channel != switch_core_session_get_channel(s)) {
		stream->write_function(stream, "-ERR struct switch_core_session layout differs\n");
	} else if (!strcmp(argv[2], "set")) {
		__atomic_fetch_or(&h->flags, SP_SSF_MEDIA_BUG_TAP_ONLY, __ATOMIC_SEQ_CST);
		stream->write_function(stream, "+OK set\n");
	} else {
		uint32_t f = __atomic_load_n(&h->flags, __ATOMIC_SEQ_CST);
		stream->write_function(stream, "+OK %d\n", (f & SP_SSF_MEDIA_BUG_TAP_ONLY) ? 1 : 0);
	}
	switch_core_session_rwunlock(s);
end:
	switch_safe_free(dup);
	return SWITCH_STATUS_SUCCESS;
}

SWITCH_MODULE_LOAD_FUNCTION(mod_sp_fault_load)
{
	switch_api_interface_t *api;

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	SWITCH_ADD_API(api, "sp_fault", "secure_pay test fault injection", sp_fault_api, "tap_only <uuid> set|get");
	return SWITCH_STATUS_SUCCESS;
}
