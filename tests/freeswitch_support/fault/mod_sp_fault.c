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
 * API `sp_fault native_tap <uuid> start <function> <path>` / `stop <function>`: another module's
 * codec-payload tap, as a third-party recorder or audio fork would add it: a media bug of
 * function <function> with SMBF_TAP_NATIVE_READ that appends every native read frame's payload
 * (what the channel received, before any decoding or media bug) to <path>. secure_pay must
 * pause it in secure mode (src/host/freeswitch/recording.rs) although it knows nothing of it.
 *
 * API `sp_fault replace_tap <uuid> start <function> <path>` / `stop <function>`: another module's
 * decoded-audio bug added at the head of the list (SMBF_READ_REPLACE | SMBF_FIRST): it appends
 * the decoded read frame (L16) it is handed to <path> and leaves the frame as it is. Added after
 * secure_pay's bug, FreeSWITCH runs it before secure_pay's masker; secure_pay must pause it.
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

static void sp_native_tap(switch_stream_handle_t *stream, int argc, char **argv);

SWITCH_STANDARD_API(sp_fault_api)
{
	char *argv[5] = { 0 };
	char *dup = NULL;
	int argc = 0;
	switch_core_session_t *s = NULL;
	struct sp_session_head *h;

	if (!zstr(cmd) && (dup = strdup(cmd))) {
		argc = switch_separate_string(dup, ' ', argv, 5);
	}
	if (argc >= 4 && (!strcmp(argv[0], "native_tap") || !strcmp(argv[0], "replace_tap"))) {
		sp_native_tap(stream, argc, argv);
		goto end;
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

struct sp_tap {
	FILE *f;
};

static switch_bool_t sp_tap_cb(switch_media_bug_t *bug, void *user_data, switch_abc_type_t type)
{
	struct sp_tap *t = user_data;

	switch (type) {
	case SWITCH_ABC_TYPE_TAP_NATIVE_READ: {
		switch_frame_t *f = switch_core_media_bug_get_native_read_frame(bug);
		if (t && t->f && f && f->data && f->datalen) {
			fwrite(f->data, 1, f->datalen, t->f);
			fflush(t->f);
		}
		break;
	}
	case SWITCH_ABC_TYPE_READ_REPLACE: {
		switch_frame_t *f = switch_core_media_bug_get_read_replace_frame(bug);
		if (t && t->f && f && f->data && f->datalen) {
			fwrite(f->data, 1, f->datalen, t->f);
			fflush(t->f);
		}
		break;
	}
	case SWITCH_ABC_TYPE_CLOSE:
		if (t && t->f) {
			fclose(t->f);
			t->f = NULL;
		}
		break;
	default:
		break;
	}
	return SWITCH_TRUE;
}

static void sp_native_tap(switch_stream_handle_t *stream, int argc, char **argv)
{
	switch_media_bug_flag_t flags = !strcmp(argv[0], "replace_tap") ? (SMBF_READ_REPLACE | SMBF_FIRST) : SMBF_TAP_NATIVE_READ;
	switch_core_session_t *s;
	switch_media_bug_t *bug = NULL;
	struct sp_tap *t;

	if (!(s = switch_core_session_locate(argv[1]))) {
		stream->write_function(stream, "-ERR no such channel\n");
		return;
	}
	if (argc == 5 && !strcmp(argv[2], "start")) {
		t = switch_core_session_alloc(s, sizeof(*t));
		if (!(t->f = fopen(argv[4], "wb"))) {
			stream->write_function(stream, "-ERR cannot open the file\n");
		} else if (switch_core_media_bug_add(s, switch_core_session_strdup(s, argv[3]), "sp_fault", sp_tap_cb, t, 0,
											 flags, &bug) != SWITCH_STATUS_SUCCESS) {
			fclose(t->f);
			t->f = NULL;
			stream->write_function(stream, "-ERR media bug refused\n");
		} else {
			stream->write_function(stream, "+OK tapping\n");
		}
	} else if (argc == 4 && !strcmp(argv[2], "stop")) {
		switch_core_media_bug_remove_all_function(s, argv[3]);
		stream->write_function(stream, "+OK stopped\n");
	} else {
		stream->write_function(stream, "-ERR usage: sp_fault native_tap <uuid> start <function> <path> | stop <function>\n");
	}
	switch_core_session_rwunlock(s);
}

SWITCH_MODULE_LOAD_FUNCTION(mod_sp_fault_load)
{
	switch_api_interface_t *api;

	*module_interface = switch_loadable_module_create_module_interface(pool, modname);
	SWITCH_ADD_API(api, "sp_fault", "secure_pay test fault injection", sp_fault_api, "tap_only <uuid> set|get | native_tap <uuid> start <function> <path> | native_tap <uuid> stop <function> | replace_tap <uuid> start|stop ...");
	return SWITCH_STATUS_SUCCESS;
}
