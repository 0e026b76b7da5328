/*
 * core.c: luaopen_vidu_core, the module entry point. The parts live in their own files.
 */
#include "core.h"
#include "append.h"

#define VIDU_CORE_VERSION "0.1.0"

LUALIB_API int luaopen_vidu_core(lua_State *L);

/* Builds the module table from each part. */
LUALIB_API int luaopen_vidu_core(lua_State *L)
{
	lua_newtable(L);
	lua_pushliteral(L, VIDU_CORE_VERSION);
	lua_setfield(L, -2, "version");
	vidu_open_util(L);
	vidu_open_b64(L);
	vidu_open_crypto(L);
	vidu_open_image(L);
	vidu_open_engine(L);
	vidu_open_append(L);
	return 1;
}
