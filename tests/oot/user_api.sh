#!/usr/bin/env bash
# user_api.sh: a plugin that calls the user API (seastreamer.h) does not build; one that keeps to
# plugin.h and its host table does.
#
# usage: user_api.sh CFLAG...   (the -I/pkg-config flags that find <seastreamer/plugin.h>)
#
# Each tiny plugin is compiled and linked with the build line docs/plugins.md gives to plugin
# authors ($CC, default cc). The ways a plugin could reach the user API, each refused by name:
#   - including seastreamer.h beside plugin.h (either order): the headers' #error;
#   - calling sea_producer_send with plugin.h alone: no declaration, and
#     -Werror=implicit-function-declaration;
#   - declaring it itself: plugins link no libseastreamer, and -Wl,-z,defs refuses the
#     undefined symbol.
# The control, a correct plugin built the same way, must build, so the flags cannot refuse
# everything. tests/oot/run.sh runs this against an installed tree too.
set -uo pipefail

CC=${CC:-cc}
CFLAGS=("$@")
# The build line of docs/plugins.md (step 3), less the pkg-config part given as arguments.
PLUGIN_FLAGS=(-std=c11 -Wall -Wextra -Werror -Werror=implicit-function-declaration -fPIC -shared
  -Wl,-z,defs)

T=$(mktemp -d "${TMPDIR:-/tmp}/seastreamer-user-api.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
source "$(dirname "${BASH_SOURCE[0]}")/../count.sh"

# build NAME: compile $T/NAME.c into $T/NAME.so; its messages go to $T/NAME.log.
build() {
  "$CC" "${PLUGIN_FLAGS[@]}" "${CFLAGS[@]}" -o "$T/$1.so" "$T/$1.c" >"$T/$1.log" 2>&1
}
# refused NAME PATTERN: NAME must not build, and say PATTERN (an ERE) why.
refused() {
  if build "$1"; then
    bad "$1: built, but a plugin that calls the user API must not"
  elif grep -Eq -- "$2" "$T/$1.log"; then
    ok
  else
    bad "$1: refused, but not for the reason /$2/:"
    show "$T/$1.log"
  fi
}

# The part every tiny plugin shares: a descriptor and the entry point (SEA_PLUGIN_ENTRY names
# its parameter host), through the host table.
common='
static const sea_host_t *tiny_host;
static int t_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                     const sea_options_t *opts, void **impl) {
  (void)s, (void)uri, (void)opts;
  *impl = rt;
  return 0;
}
static void t_disconnect(void *impl) { (void)impl; }
static int t_open(void *s, sea_producer_t *p, const sea_open_args_t *args, void **impl) {
  (void)s, (void)args;
  *impl = p;
  return 0;
}
static void t_close(void *impl) { (void)impl; }
static int t_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
static const char *const schemes[] = {"tiny", NULL};
static const sea_plugin_t desc = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR, .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t), .name = "tiny", .schemes = schemes,
    .version = "1.0.0", .caps = SEA_CAP_REALTIME, .connect = t_connect,
    .disconnect = t_disconnect, .producer_open = t_open, .producer_send = t_send,
    .producer_close = t_close};
SEA_PLUGIN_ENTRY(tiny) {
  tiny_host = host;
  return &desc;
}
'

# The control: plugin.h only, and the host's table for what it needs of the host.
cat >"$T/good.c" <<EOF
#include <seastreamer/plugin.h>
$common
static int t_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  (void)flags;
  sea_meta_t meta = m->meta;
  tiny_host->receipt(impl, token, 0, &meta);
  return 0;
}
EOF
if build good; then ok; else
  bad "good: a correct plugin does not build with the plugin build line:"
  show "$T/good.log"
fi

# The same send, passed on to the user API instead.
send_via_user_api='
static int t_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  (void)flags;
  return sea_producer_send(impl, m, token);
}
'
rule='a plugin must not call the user API'
printf '#include <seastreamer/plugin.h>\n#include <seastreamer/seastreamer.h>\n%s%s' \
  "$common" "$send_via_user_api" >"$T/both.c"
refused both "#error .*$rule"
printf '#include <seastreamer/seastreamer.h>\n#include <seastreamer/plugin.h>\n%s%s' \
  "$common" "$send_via_user_api" >"$T/both_reversed.c"
refused both_reversed "#error .*$rule"
printf '#include <seastreamer/plugin.h>\n%s%s' "$common" "$send_via_user_api" >"$T/undeclared.c"
refused undeclared "implicit declaration of function .sea_producer_send."
printf '#include <seastreamer/plugin.h>\nint sea_producer_send(sea_producer_t *p, const sea_message_t *m, void *token);\n%s%s' \
  "$common" "$send_via_user_api" >"$T/declared.c"
refused declared "undefined reference to .sea_producer_send."

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
