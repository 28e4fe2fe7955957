/*
 * secure_pay FreeSWITCH shim: the macro-only and variadic pieces of the FreeSWITCH API, as plain
 * functions Rust can call. bindgen reads this header (it includes switch.h); fs_shim.c
 * implements it. No data is ever passed as a format string: every variadic call uses "%s".
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SECURE_PAY_FS_SHIM_H
#define SECURE_PAY_FS_SHIM_H

#include <switch.h>

/* The module table itself is a Rust static (src/host/freeswitch/mod.rs): symbols of this static
 * library are not exported from the Rust cdylib, so SWITCH_MODULE_DEFINITION cannot live here.
 * Its API version is the SWITCH_API_VERSION constant bindgen reads from these headers. */

/* switch_log_printf(SWITCH_CHANNEL_ID_LOG, file, func, line, uuid, level, "%s", msg). */
void sp_fs_log(const char *file, const char *func, int line, const char *uuid, int level,
               const char *msg);

/* SWITCH_ADD_APP: returns the new interface or NULL. */
switch_application_interface_t *sp_fs_add_app(switch_loadable_module_interface_t **module_interface,
                                               const char *name, const char *short_desc,
                                               const char *long_desc,
                                               switch_application_function_t fn,
                                               const char *syntax, uint32_t flags);

/* SWITCH_ADD_API: returns the new interface or NULL. */
switch_api_interface_t *sp_fs_add_api(switch_loadable_module_interface_t **module_interface,
                                       const char *name, const char *desc,
                                       switch_api_function_t fn, const char *syntax);

/* stream->write_function(stream, "%s", text). */
switch_status_t sp_fs_stream_write(switch_stream_handle_t *stream, const char *text);

/* switch_core_session_locate(uuid): read-locked session or NULL (caller must rwunlock). */
switch_core_session_t *sp_fs_session_locate(const char *uuid);

/* switch_channel_get_variable(channel, name) (no dup: valid until the variable changes). */
const char *sp_fs_channel_get_variable(switch_channel_t *channel, const char *name);

/* switch_core_media_bug_enumerate(session) (every media bug's function and target, as
 * FreeSWITCH's XML text) through a SWITCH_STANDARD_STREAM, copied into buf (NUL-terminated,
 * cut at len - 1 bytes). Returns the text's whole length: call again with a larger buf if it is
 * len or more. Takes the session's bug list read lock: never call it from a media bug callback. */
size_t sp_fs_bug_list(switch_core_session_t *session, char *buf, size_t len);

#endif
