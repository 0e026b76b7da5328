/*
 * core.h: how the parts of vidu.core meet. Each part adds its functions to the module table
 * at the top of the stack; luaopen_vidu_core (core.c) calls them in turn.
 */
#ifndef VIDU_CORE_H
#define VIDU_CORE_H

#include "compat.h"

/* engine.c: core.engine{...} and the engine/transfer metatable; curl_global_init once. */
void vidu_open_engine(lua_State *L);
/* b64.c: core.b64encode, core.b64decode, core.data_uri, core.data_uri_file,
 * core.parse_data_uri, core.b64_impl. */
void vidu_open_b64(lua_State *L);
/* image.c: core.image_info, core.image_info_file. */
void vidu_open_image(lua_State *L);
/* crypto.c: core.sha256, core.hmac_sha256, core.ed25519_verify, core.secure_equal,
 * core.hexencode, core.hexdecode, core.b64urlencode, core.b64urldecode (OpenSSL libcrypto). */
void vidu_open_crypto(lua_State *L);
/* util.c: core.now, core.utf8_len, core.is_regular_or_absent and other small helpers. */
void vidu_open_util(lua_State *L);

#endif
