/* bindgen entry point: the Asterisk headers Rust uses plus the shim's own declarations.
 * asterisk.h must come first (it sets up the build options every other header relies on). */
#include "asterisk.h"
#include "asterisk/channel.h"
#include "asterisk/framehook.h"
#include "asterisk/manager.h"
#include "asterisk/module.h"
#include "asterisk/pbx.h"
#include "ast_shim.h"
