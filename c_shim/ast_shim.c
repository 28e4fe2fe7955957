/* secure_pay C shim for Asterisk 22 (see ast_shim.h). Holds AST_MODULE_INFO (the module table
 * the loader reads, built by Asterisk's own macro so no ABI constant is hand-written), the
 * framehook trampoline, and wrappers for macro-only APIs. All decisions are made in Rust. */
#define ASTMM_LIBC ASTMM_IGNORE
#include "asterisk.h"

#include <string.h>

#include "asterisk/audiohook.h"
#include "asterisk/bridge.h"
#include "asterisk/bridge_technology.h"
#include "asterisk/channel.h"
#include "asterisk/cli.h"
#include "asterisk/config.h"
#include "asterisk/core_local.h"
#include "asterisk/datastore.h"
#include "asterisk/format.h"
#include "asterisk/format_cache.h"
#include "asterisk/frame.h"
#include "asterisk/framehook.h"
#include "asterisk/logger.h"
#include "asterisk/manager.h"
#include "asterisk/module.h"
#include "asterisk/json.h"
#include "asterisk/pbx.h"
#include "asterisk/stasis.h"
#include "asterisk/stasis_channels.h"
#include "asterisk/stream.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "ast_shim.h"

struct ast_module *sp_ast_self(void)
{
	return AST_MODULE_SELF;
}

void sp_ast_log(int level, const char *msg)
{
	int l;
	switch (level) {
	case SP_AST_LOG_ERROR: l = __LOG_ERROR; break;
	case SP_AST_LOG_WARNING: l = __LOG_WARNING; break;
	case SP_AST_LOG_NOTICE: l = __LOG_NOTICE; break;
	default: l = __LOG_DEBUG; break;
	}
	ast_log(l, "res_secure_pay", 0, "secure_pay", "%s\n", msg ? msg : "");
}

void sp_ast_manager_event(const char *event, const char *body)
{
	manager_event(EVENT_FLAG_CALL, event, "%s", body ? body : "");
}

void sp_ast_channel_lock(struct ast_channel *chan)
{
	ast_channel_lock(chan);
}

void sp_ast_channel_unlock(struct ast_channel *chan)
{
	ast_channel_unlock(chan);
}

struct ast_channel *sp_ast_channel_unref(struct ast_channel *chan)
{
	return ast_channel_unref(chan);
}

struct ast_channel *sp_ast_channel_ref(struct ast_channel *chan)
{
	return ast_channel_ref(chan);
}

int sp_ast_chan_media_native(struct ast_channel *chan)
{
	/* Lock order in the bridging core is bridge -> channel: take the bridge reference under
	 * the channel lock, drop the channel lock, then look at the bridge under its own lock. */
	struct ast_bridge *bridge;
	struct ast_stream_topology *topology;
	int native = 0, audio = 0, i, n;

	ast_channel_lock(chan);
	/* Asterisk runs READ framehooks on the default stream only and lets frames of other
	 * streams through untouched: a second audio stream (max_audio_streams > 1) would reach
	 * the bridge unmasked. Reported like media out of the core (muted, refused at start). */
	topology = ast_channel_get_stream_topology(chan);
	n = topology ? ast_stream_topology_get_count(topology) : 0;
	for (i = 0; i < n; i++) {
		struct ast_stream *st = ast_stream_topology_get_stream(topology, i);
		if (st && ast_stream_get_type(st) == AST_MEDIA_TYPE_AUDIO
			&& ast_stream_get_state(st) != AST_STREAM_STATE_REMOVED) {
			audio++;
		}
	}
	if (audio > 1) {
		ast_channel_unlock(chan);
		return 1;
	}
	bridge = ast_channel_get_bridge(chan);
	ast_channel_unlock(chan);
	if (!bridge) {
		return 0;
	}
	ast_bridge_lock(bridge);
	if (bridge->technology && (bridge->technology->capabilities & AST_BRIDGE_CAPABILITY_NATIVE)) {
		native = 1;
	}
	ast_bridge_unlock(bridge);
	ao2_ref(bridge, -1);
	return native;
}

void sp_ast_module_ref(void)
{
	ast_module_ref(AST_MODULE_SELF);
}

void sp_ast_module_unref(void)
{
	ast_module_unref(AST_MODULE_SELF);
}

char *sp_ast_channel_state_headers(const char *uniqueid)
{
	struct ast_channel_snapshot *snap;
	struct ast_str *str;
	char *out = NULL;

	if (!uniqueid || !*uniqueid) {
		return NULL;
	}
	snap = ast_channel_snapshot_get_latest(uniqueid);
	if (!snap) {
		return NULL;
	}
	str = ast_manager_build_channel_state_string(snap);
	ao2_ref(snap, -1);
	if (str) {
		out = ast_strdup(ast_str_buffer(str));
		ast_free(str);
	}
	return out;
}

void sp_ast_user_event(struct ast_channel *chan, const char *name, const char *body)
{
	struct ast_json *blob;
	char *copy, *line, *save = NULL;

	if (!chan || !name) {
		return;
	}
	blob = ast_json_pack("{s: s}", "eventname", name);
	if (!blob) {
		return;
	}
	copy = ast_strdup(body ? body : "");
	for (line = copy ? strtok_r(copy, "\r\n", &save) : NULL; line; line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':');
		const char *v;
		if (!colon) {
			continue;
		}
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ') {
			v++;
		}
		ast_json_object_set(blob, line, ast_json_string_create(v));
	}
	ast_free(copy);
	ast_channel_lock(chan);
	ast_multi_object_blob_single_channel_publish(chan, ast_multi_user_event_type(), blob);
	ast_channel_unlock(chan);
	ast_json_unref(blob);
}

int sp_ast_stasis_loaded(void)
{
	return ast_module_check("res_stasis.so");
}

void sp_ast_free(void *p)
{
	ast_free(p);
}

void sp_ast_status_list(struct mansession *s, const struct message *m, const char *body)
{
	const char *id = astman_get_header(m, "ActionID");
	char idtext[256] = "";

	if (!ast_strlen_zero(id)) {
		snprintf(idtext, sizeof(idtext), "ActionID: %s\r\n", id);
	}
	astman_send_listack(s, m, "Secure pay status will follow", "start");
	if (body) {
		astman_append(s, "Event: SecurePayStatus\r\n%s%s\r\n", idtext, body);
	}
	astman_send_list_complete_start(s, m, "SecurePayStatusComplete", body ? 1 : 0);
	astman_send_list_complete_end(s);
}

void sp_ast_astman_append(void *s, const char *text)
{
	astman_append((struct mansession *) s, "%s", text ? text : "");
}

/* ---- framehook on the customer channel's READ side ---- */

static void fill_silence(int codec, void *data, int datalen)
{
	unsigned char v = 0;
	if (codec == SP_AST_CODEC_ULAW) {
		v = 0xFF;
	} else if (codec == SP_AST_CODEC_ALAW) {
		v = 0xD5;
	}
	memset(data, v, (size_t) datalen);
}

static struct ast_frame *hook_event(struct ast_channel *chan, struct ast_frame *f,
	enum ast_framehook_event event, void *data)
{
	struct ast_format *fmt;
	int codec = 0, verdict;
	unsigned int rate = 0;

	if (!f || event != AST_FRAMEHOOK_EVENT_READ) {
		return f;
	}
	switch (f->frametype) {
	case AST_FRAME_DTMF_BEGIN:
	case AST_FRAME_DTMF_END:
		/* Swallow every out-of-band digit (RFC 4733, SIP INFO, DTMF frames) before the AMI DTMF
		 * events, the bridge, MixMonitor and every peer see it; Rust captures it. */
		sp_rs_on_dtmf(chan, data, f->frametype == AST_FRAME_DTMF_END, f->subclass.integer, f->len);
		ast_frfree(f);
		return &ast_null_frame;
	case AST_FRAME_VOICE:
		fmt = f->subclass.format;
		if (fmt && ast_format_cmp(fmt, ast_format_ulaw) == AST_FORMAT_CMP_EQUAL) {
			codec = SP_AST_CODEC_ULAW;
			rate = 8000;
		} else if (fmt && ast_format_cmp(fmt, ast_format_alaw) == AST_FORMAT_CMP_EQUAL) {
			codec = SP_AST_CODEC_ALAW;
			rate = 8000;
		} else if (fmt && ast_format_cache_is_slinear(fmt)) {
			codec = SP_AST_CODEC_SLIN;
			rate = ast_format_get_sample_rate(fmt);
		}
		if (!codec || !f->data.ptr || f->datalen <= 0) {
			/* A codec we cannot inspect: fail closed, nothing of it reaches the agent. */
			sp_rs_on_uninspectable(chan, data, fmt ? ast_format_get_name(fmt) : "unknown");
			ast_frfree(f);
			return &ast_null_frame;
		}
		verdict = sp_rs_on_voice(chan, data, codec, rate, f->data.ptr, f->datalen, f->samples);
		if (verdict == SP_AST_VOICE_PASS) {
			return f;
		}
		if (verdict == SP_AST_VOICE_MUTE) {
			fill_silence(codec, f->data.ptr, f->datalen);
			return f;
		}
		ast_frfree(f);
		return &ast_null_frame;
	default:
		return f;
	}
}

static int hook_consume(void *data, enum ast_frame_type type)
{
	/* Consuming VOICE makes ast_channel_has_hook_requiring_audio() true: no native RTP bridge
	 * and no direct media while secure, so every frame passes through this hook. */
	return type == AST_FRAME_VOICE || type == AST_FRAME_DTMF_BEGIN || type == AST_FRAME_DTMF_END;
}

static void hook_destroy(void *data)
{
	sp_rs_hook_destroy(data);
}

static void hook_fixup(void *data, int framehook_id, struct ast_channel *old_chan,
	struct ast_channel *new_chan)
{
	sp_rs_hook_fixup(data, framehook_id, new_chan);
}

int sp_ast_hook_attach(struct ast_channel *chan, void *state)
{
	static struct ast_framehook_interface iface = {
		.version = AST_FRAMEHOOK_INTERFACE_VERSION,
		.event_cb = hook_event,
		.destroy_cb = hook_destroy,
		.consume_cb = hook_consume,
		.chan_fixup_cb = hook_fixup,
		/* keep the hook (and secure mode) on the surviving channel of a masquerade */
		.disable_inheritance = 0,
	};
	struct ast_framehook_interface i = iface;
	i.data = state;
	return ast_framehook_attach(chan, &i);
}

int sp_ast_channel_gone(struct ast_channel *chan)
{
	/* ast_hangup sets it under the channel lock before it destroys the framehooks. (Not
	 * ast_check_hangup: its soft-hangup flags are also set for a moment to move a live channel
	 * out of a bridge or to a new dialplan location.) */
	return ast_test_flag(ast_channel_flags(chan), AST_FLAG_ZOMBIE) ? 1 : 0;
}

int sp_ast_foreign_framehooks(struct ast_channel *chan)
{
	struct ast_framehook_list *l = ast_channel_framehooks(chan);

	return !ast_framehook_list_contains_no_active_of_type(l, AST_FRAME_VOICE)
		|| !ast_framehook_list_contains_no_active_of_type(l, AST_FRAME_DTMF_BEGIN)
		|| !ast_framehook_list_contains_no_active_of_type(l, AST_FRAME_DTMF_END);
}

/* ---- datastore: which hook (and state) belongs to the channel ---- */

struct sp_ds {
	int hook_id;
	void *state;
};

static void ds_destroy(void *data)
{
	ast_free(data);
}

static const struct ast_datastore_info ds_info = {
	.type = "secure_pay",
	.destroy = ds_destroy,
};

int sp_ast_ds_add(struct ast_channel *chan, int hook_id, void *state)
{
	struct ast_datastore *ds;
	struct sp_ds *d = ast_calloc(1, sizeof(*d));
	if (!d) {
		return -1;
	}
	ds = ast_datastore_alloc(&ds_info, NULL);
	if (!ds) {
		ast_free(d);
		return -1;
	}
	d->hook_id = hook_id;
	d->state = state;
	ds->data = d;
	ast_channel_datastore_add(chan, ds);
	return 0;
}

void *sp_ast_ds_find(struct ast_channel *chan, int *hook_id)
{
	struct ast_datastore *ds = ast_channel_datastore_find(chan, &ds_info, NULL);
	struct sp_ds *d;
	if (!ds || !ds->data) {
		return NULL;
	}
	d = ds->data;
	if (hook_id) {
		*hook_id = d->hook_id;
	}
	return d->state;
}

void sp_ast_ds_remove(struct ast_channel *chan)
{
	struct ast_datastore *ds = ast_channel_datastore_find(chan, &ds_info, NULL);
	if (ds) {
		ast_channel_datastore_remove(chan, ds);
		ast_datastore_free(ds);
	}
}

/* ---- configuration (secure_pay.conf in Asterisk's format) ---- */

int sp_ast_config_load(const char *file, int reload)
{
	struct ast_flags flags = { reload ? CONFIG_FLAG_FILEUNCHANGED : 0 };
	struct ast_config *cfg = ast_config_load2(file, AST_MODULE, flags);
	const char *cat = NULL;
	struct ast_variable *v;

	if (cfg == CONFIG_STATUS_FILEMISSING) {
		return SP_AST_CONFIG_MISSING;
	}
	if (cfg == CONFIG_STATUS_FILEUNCHANGED) {
		return SP_AST_CONFIG_UNCHANGED;
	}
	if (cfg == CONFIG_STATUS_FILEINVALID) {
		return SP_AST_CONFIG_INVALID;
	}
	while ((cat = ast_category_browse(cfg, cat))) {
		for (v = ast_variable_browse(cfg, cat); v; v = v->next) {
			sp_rs_config_pair(cat, v->name, v->value);
		}
	}
	ast_config_destroy(cfg);
	return SP_AST_CONFIG_OK;
}

/* ---- CLI ---- */

static char *cli_show(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a, int which,
	const char *command, const char *usage)
{
	char *text;
	switch (cmd) {
	case CLI_INIT:
		e->command = (char *) command;
		e->usage = usage;
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != e->args) {
		return CLI_SHOWUSAGE;
	}
	text = sp_rs_cli_text(which);
	if (text) {
		ast_cli(a->fd, "%s", text);
		sp_rs_free_text(text);
	}
	return CLI_SUCCESS;
}

static char *cli_show_channels(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_show(e, cmd, a, SP_AST_CLI_SHOW_CHANNELS, "securepay show channels",
		"Usage: securepay show channels\n"
		"       Lists channels in secure mode with their masked capture state.\n");
}

static char *cli_show_settings(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_show(e, cmd, a, SP_AST_CLI_SHOW_SETTINGS, "securepay show settings",
		"Usage: securepay show settings\n"
		"       Shows the settings loaded from secure_pay.conf (secrets hidden).\n");
}

static struct ast_cli_entry cli_entries[] = {
	AST_CLI_DEFINE(cli_show_channels, "List channels in secure mode"),
	AST_CLI_DEFINE(cli_show_settings, "Show secure_pay settings"),
};

int sp_ast_cli_register(void)
{
	return ast_cli_register_multiple(cli_entries, ARRAY_LEN(cli_entries));
}

void sp_ast_cli_unregister(void)
{
	ast_cli_unregister_multiple(cli_entries, ARRAY_LEN(cli_entries));
}

/* ---- SECURE_PAY() dialplan function (usable from ARI: POST /channels/{id}/variable) ---- */

static int func_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	if (!chan) {
		return -1;
	}
	return sp_rs_func_write(chan, data ? data : "", value ? value : "");
}

static struct ast_custom_function sp_func = {
	.name = "SECURE_PAY",
	.write = func_write,
};

int sp_ast_func_register(void)
{
	return ast_custom_function_register(&sp_func);
}

void sp_ast_func_unregister(void)
{
	ast_custom_function_unregister(&sp_func);
}

/* ---- the module table ---- */

static int load_module(void)
{
	return sp_rs_load() == 0 ? AST_MODULE_LOAD_SUCCESS : AST_MODULE_LOAD_DECLINE;
}

static int unload_module(void)
{
	return sp_rs_unload();
}

static int reload_module(void)
{
	return sp_rs_reload();
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER,
	"secure_pay: DTMF masking and secure card capture",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
);

/* ---- recording=pause: MixMonitor mute/unmute on the customer leg and its bridge peers ---- */

int sp_ast_mixmonitor_mute(const char *uniqueid, int mute)
{
	struct ast_channel *chan = ast_channel_get_by_name(uniqueid);
	int n;

	if (!chan) {
		return -1;
	}
	/* clear = 0 sets the mute flags, 1 clears them */
	n = ast_audiohook_set_mute_all(chan, "MixMonitor",
		AST_AUDIOHOOK_MUTE_READ | AST_AUDIOHOOK_MUTE_WRITE, mute ? 0 : 1);
	ast_channel_unref(chan);
	return n < 0 ? 0 : n;
}

static void append_uniqueid(struct ast_str **out, struct ast_channel *c)
{
	ast_channel_lock(c);
	ast_str_append(out, 0, "%s\n", ast_channel_uniqueid(c));
	ast_channel_unlock(c);
}

char *sp_ast_bridge_peer_ids(struct ast_channel *chan)
{
	struct ast_bridge *bridge;
	struct ao2_container *peers;
	struct ao2_iterator it;
	struct ast_channel *peer;
	struct ast_str *out;
	char *res;

	/* get_bridge wants the channel locked; the bridge is locked only after it is unlocked
	 * (Asterisk's order is bridge, then channel) */
	ast_channel_lock(chan);
	bridge = ast_channel_get_bridge(chan);
	ast_channel_unlock(chan);
	if (!bridge) {
		return NULL;
	}
	peers = ast_bridge_peers(bridge);
	ao2_ref(bridge, -1);
	if (!peers) {
		return NULL;
	}
	out = ast_str_create(256);
	if (!out) {
		ao2_ref(peers, -1);
		return NULL;
	}
	it = ao2_iterator_init(peers, 0);
	while ((peer = ao2_iterator_next(&it))) {
		if (peer != chan) {
			struct ast_channel *other = NULL;

			append_uniqueid(&out, peer);
			/* a Local channel's other half (e.g. the agent's phone side) records too */
			ast_channel_lock(peer);
			if (!strncasecmp(ast_channel_name(peer), "Local/", 6)) {
				other = ast_local_get_peer(peer);
			}
			ast_channel_unlock(peer);
			if (other) {
				append_uniqueid(&out, other);
				ast_channel_unref(other);
			}
		}
		ast_channel_unref(peer);
	}
	ao2_iterator_destroy(&it);
	ao2_ref(peers, -1);
	res = ast_strdup(ast_str_buffer(out));
	ast_free(out);
	return res;
}
