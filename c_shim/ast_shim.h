/* secure_pay C shim for Asterisk 22: the parts of the module API that are macros (module
 * registration, datastores, CLI entries, channel locking, logging, manager events) wrapped as
 * plain functions, plus the framehook trampoline. Functions named sp_ast_* are implemented in
 * ast_shim.c and called from Rust; functions named sp_rs_* are implemented in Rust
 * (src/host/asterisk/) and called from the shim. */
#ifndef SECURE_PAY_AST_SHIM_H
#define SECURE_PAY_AST_SHIM_H

struct ast_channel;
struct ast_module;

/* Voice codecs the framehook hands to Rust. */
#define SP_AST_CODEC_SLIN 1
#define SP_AST_CODEC_ULAW 2
#define SP_AST_CODEC_ALAW 3

/* Verdicts of sp_rs_on_voice. */
#define SP_AST_VOICE_PASS 0 /* frame was processed in place, forward it */
#define SP_AST_VOICE_MUTE 1 /* overwrite the whole frame with codec silence, forward it */
#define SP_AST_VOICE_DROP 2 /* drop the frame (fail closed) */

/* Log levels for sp_ast_log (mapped to Asterisk's __LOG_* in the shim). */
#define SP_AST_LOG_ERROR 1
#define SP_AST_LOG_WARNING 2
#define SP_AST_LOG_NOTICE 3
#define SP_AST_LOG_DEBUG 4

/* sp_ast_config_load results. */
#define SP_AST_CONFIG_OK 0
#define SP_AST_CONFIG_MISSING 1
#define SP_AST_CONFIG_UNCHANGED 2
#define SP_AST_CONFIG_INVALID 3

/* CLI commands (argument of sp_rs_cli_text). */
#define SP_AST_CLI_SHOW_CHANNELS 1
#define SP_AST_CLI_SHOW_SETTINGS 2

/* ---- implemented in C (ast_shim.c) ---- */
struct ast_module *sp_ast_self(void);
/* ast_log(level, ..., "%s", msg): msg is never a format string. */
void sp_ast_log(int level, const char *msg);
/* manager_event(EVENT_FLAG_CALL, event, "%s", body): body is "Key: value\r\n" lines. */
void sp_ast_manager_event(const char *event, const char *body);
void sp_ast_channel_lock(struct ast_channel *chan);
void sp_ast_channel_unlock(struct ast_channel *chan);
/* ast_channel_unref; returns NULL. */
struct ast_channel *sp_ast_channel_unref(struct ast_channel *chan);
/* Channel locked. Attaches the READ framehook with `state` as its data; returns the id or -1. */
int sp_ast_hook_attach(struct ast_channel *chan, void *state);
/* Channel locked. 1 if an active framehook that consumes voice or DTMF frames is attached
 * (a hook without consume_cb counts): READ framehooks run in attach order, so such a hook
 * would see the customer's raw frames before one attached now. 0 otherwise. */
int sp_ast_foreign_framehooks(struct ast_channel *chan);
/* Channel locked. 1 if ast_hangup has run on the channel (zombie): a framehook attached now
 * would never be destroyed (ast_hangup already destroyed the list). */
int sp_ast_channel_gone(struct ast_channel *chan);
/* Channel locked. Adds the "secure_pay" datastore holding the hook id and state pointer. 0 = ok. */
int sp_ast_ds_add(struct ast_channel *chan, int hook_id, void *state);
/* Channel locked. Returns the state pointer and hook id of the datastore, or NULL. */
void *sp_ast_ds_find(struct ast_channel *chan, int *hook_id);
/* Channel locked. Removes and frees the datastore (never touches the state). */
void sp_ast_ds_remove(struct ast_channel *chan);
/* Loads `file` with ast_config_load2 and calls sp_rs_config_pair for every variable. */
int sp_ast_config_load(const char *file, int reload);
int sp_ast_cli_register(void);
void sp_ast_cli_unregister(void);
/* ast_channel_ref: a new reference to `chan` (give it back with sp_ast_channel_unref). */
struct ast_channel *sp_ast_channel_ref(struct ast_channel *chan);
/* Channel UNLOCKED, caller holds a reference. 1 if the channel is in a bridge whose technology
 * is native (AST_BRIDGE_CAPABILITY_NATIVE, e.g. native_rtp: local RTP forwarding or direct
 * media), i.e. its media may bypass the core and every framehook, or if it has more than one
 * audio stream (READ framehooks only see the default stream); 0 otherwise. */
int sp_ast_chan_media_native(struct ast_channel *chan);
/* No channel locked. Mutes (mute != 0) or unmutes both directions of every MixMonitor on the
 * channel whose uniqueid is `uniqueid` (ast_audiohook_set_mute_all, source "MixMonitor").
 * Returns how many MixMonitors it changed, -1 if there is no such channel. */
int sp_ast_mixmonitor_mute(const char *uniqueid, int mute);
/* Channel UNLOCKED, caller holds a reference. The uniqueids of the other channels in `chan`'s
 * bridge (for a Local channel among them also its other half), each followed by a newline;
 * NULL if `chan` is not in a bridge. Free with sp_ast_free. */
char *sp_ast_bridge_peer_ids(struct ast_channel *chan);
void sp_ast_module_ref(void);
void sp_ast_module_unref(void);
/* The standard channel snapshot headers (ast_manager_build_channel_state_string: Channel,
 * ChannelState, CallerIDNum, ..., Context, Exten, Priority, Uniqueid, Linkedid), each ending in
 * CRLF, for the channel `uniqueid`; NULL if it has no snapshot. Free with sp_ast_free. */
char *sp_ast_channel_state_headers(const char *uniqueid);
void sp_ast_free(void *p);
/* Publishes a channel user event (Stasis: ARI ChannelUserevent, AMI UserEvent) on `chan`'s
 * topic: {"eventname": name, key: value for each "Key: value\r\n" line of body}. Locks chan
 * (recursively). */
void sp_ast_user_event(struct ast_channel *chan, const char *name, const char *body);
/* 1 if res_stasis.so (the ARI application layer, the only consumer of sp_ast_user_event that
 * AMI does not already get as SecurePay*) is loaded. */
int sp_ast_stasis_loaded(void);
/* Registers / unregisters the SECURE_PAY() dialplan function (write: sp_rs_func_write). */
int sp_ast_func_register(void);
void sp_ast_func_unregister(void);
struct mansession;
struct message;
/* Answers an AMI action as a list: "EventList: start", then one SecurePayStatus event with the
 * action's ActionID and `body` ("Key: value\r\n" lines; NULL = empty list), then
 * SecurePayStatusComplete (EventList: Complete, ListItems). */
void sp_ast_status_list(struct mansession *s, const struct message *m, const char *body);
/* astman_append(s, "%s", text). */
void sp_ast_astman_append(void *s, const char *text);

/* ---- implemented in Rust (src/host/asterisk/) ---- */
#ifndef SP_BINDGEN_SKIP_RUST
int sp_rs_load(void);
int sp_rs_unload(void);
int sp_rs_reload(void);
void sp_rs_on_dtmf(struct ast_channel *chan, void *state, int end, int digit, long duration_ms);
int sp_rs_on_voice(struct ast_channel *chan, void *state, int codec, unsigned int rate, void *data,
	int datalen, int samples);
void sp_rs_on_uninspectable(struct ast_channel *chan, void *state, const char *format_name);
void sp_rs_hook_destroy(void *state);
void sp_rs_hook_fixup(void *state, int framehook_id, struct ast_channel *new_chan);
void sp_rs_config_pair(const char *section, const char *key, const char *value);
/* Returns a NUL-terminated text owned by Rust; give it back with sp_rs_free_text. */
char *sp_rs_cli_text(int which);
void sp_rs_free_text(char *text);
/* SECURE_PAY(cmd)=value on `chan` (unlocked); 0 = done, -1 = refused. */
int sp_rs_func_write(struct ast_channel *chan, const char *cmd, const char *value);
#endif

#endif
