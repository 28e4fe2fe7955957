/*
 * secure_pay FreeSWITCH shim (see fs_shim.h). Only macro expansions and "%s" wrappers live here;
 * all logic is in Rust (src/host/freeswitch/).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "fs_shim.h"

void sp_fs_log(const char *file, const char *func, int line, const char *uuid, int level,
               const char *msg)
{
	switch_log_printf(SWITCH_CHANNEL_ID_LOG, file, func, line, uuid, (switch_log_level_t)level,
	                  "%s", msg ? msg : "");
}

switch_application_interface_t *sp_fs_add_app(switch_loadable_module_interface_t **module_interface,
                                               const char *name, const char *short_desc,
                                               const char *long_desc,
                                               switch_application_function_t fn,
                                               const char *syntax, uint32_t flags)
{
	switch_application_interface_t *app_interface = NULL;
	SWITCH_ADD_APP(app_interface, name, short_desc, long_desc, fn, syntax, flags);
	return app_interface;
}

switch_api_interface_t *sp_fs_add_api(switch_loadable_module_interface_t **module_interface,
                                       const char *name, const char *desc,
                                       switch_api_function_t fn, const char *syntax)
{
	switch_api_interface_t *api_interface = NULL;
	SWITCH_ADD_API(api_interface, name, desc, fn, syntax);
	return api_interface;
}

switch_status_t sp_fs_stream_write(switch_stream_handle_t *stream, const char *text)
{
	if (!stream || !stream->write_function) {
		return SWITCH_STATUS_FALSE;
	}
	return stream->write_function(stream, "%s", text ? text : "");
}

switch_core_session_t *sp_fs_session_locate(const char *uuid)
{
	if (!uuid) {
		return NULL;
	}
	return switch_core_session_locate(uuid);
}

const char *sp_fs_channel_get_variable(switch_channel_t *channel, const char *name)
{
	return switch_channel_get_variable(channel, name);
}

size_t sp_fs_bug_list(switch_core_session_t *session, char *buf, size_t len)
{
	switch_stream_handle_t stream = { 0 };
	size_t n;

	if (!session) {
		return 0;
	}
	SWITCH_STANDARD_STREAM(stream);
	switch_core_media_bug_enumerate(session, &stream);
	n = stream.data ? strlen((const char *) stream.data) : 0;
	if (buf && len) {
		size_t c = n < len - 1 ? n : len - 1;
		if (c) {
			memcpy(buf, stream.data, c);
		}
		buf[c] = '\0';
	}
	switch_safe_free(stream.data);
	return n;
}
