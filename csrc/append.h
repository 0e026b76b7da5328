/*
 * append.h: durable appends for vidu.journal. core.append_sync(path, data) adds data to the
 * end of a file and returns only once the bytes are on stable storage (fsync), which plain
 * Lua cannot do.
 */
#ifndef VIDU_APPEND_H
#define VIDU_APPEND_H

#include "compat.h"

/* Adds core.append_sync to the module table at the top of the stack. */
void vidu_open_append(lua_State *L);

#endif
