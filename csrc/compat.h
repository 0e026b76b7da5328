/*
 * compat.h: the few Lua 5.2+ API pieces the core uses, for Lua 5.1 and LuaJIT.
 *
 * LuaJIT 2.1 already exports luaL_setfuncs, luaL_testudata and luaL_setmetatable; plain
 * Lua 5.1 does not, so those get small static stand-ins there.
 */
#ifndef VIDU_COMPAT_H
#define VIDU_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502

#ifndef lua_rawlen
#define lua_rawlen(L, i) lua_objlen((L), (i))
#endif
#ifndef luaL_newlib
#define luaL_newlibtable(L, l) lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#endif

/* LuaJIT's lualib.h names its library; lua.h alone does not say it is LuaJIT. */
#if !defined(LUAJIT_VERSION) && !defined(LUA_JITLIBNAME)
/* Plain Lua 5.1 only: LuaJIT 2.1 has these. */
static inline void vidu_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	luaL_checkstack(L, nup, "too many upvalues");
	for (; l->name != NULL; l++) {
		int i;
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}
#define luaL_setfuncs vidu_compat_setfuncs

static inline void *vidu_compat_testudata(lua_State *L, int i, const char *tname)
{
	void *p = lua_touserdata(L, i);
	if (p == NULL || !lua_getmetatable(L, i))
		return NULL;
	luaL_getmetatable(L, tname);
	if (!lua_rawequal(L, -1, -2))
		p = NULL;
	lua_pop(L, 2);
	return p;
}
#define luaL_testudata vidu_compat_testudata

#define luaL_setmetatable(L, tname) (luaL_getmetatable((L), (tname)), lua_setmetatable((L), -2))
#endif /* not LuaJIT */

#endif /* LUA_VERSION_NUM < 502 */

#endif /* VIDU_COMPAT_H */
