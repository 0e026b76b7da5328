/*
 * append.c: core.append_sync(path, data), the one write a journal needs.
 *
 * The file is opened with O_APPEND, so every write lands at the end even when two processes
 * share the file; the whole of data goes out in as few write() calls as the kernel allows
 * (one, for a journal line), then fsync, then close. When the call created the file, its
 * directory is fsync'd too, so the new name survives a power cut as well as the bytes.
 * Nothing is allocated, so an error can be returned at any point without a leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "append.h"

/* Pushes nil and "append_sync: <path>: <strerror>" and returns 2. */
static int append_fail(lua_State *L, const char *path, int err)
{
	lua_pushnil(L);
	lua_pushfstring(L, "append_sync: %s: %s", path, strerror(err));
	return 2;
}

/* fsyncs the directory that holds path. Returns 0 or an errno value. */
static int sync_parent(lua_State *L, const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *dir;
	int fd, err = 0;
	if (slash == NULL) {
		dir = ".";
	} else if (slash == path) {
		dir = "/";
	} else {
		/* A Lua string for the directory name: no malloc to free on any path. */
		lua_pushlstring(L, path, (size_t)(slash - path));
		dir = lua_tostring(L, -1);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		err = errno;
	else if (fsync(fd) != 0 && errno != EINVAL) /* some file systems cannot sync a directory */
		err = errno;
	if (fd >= 0)
		close(fd);
	if (slash != NULL && slash != path)
		lua_pop(L, 1);
	return err;
}

/*
 * core.append_sync(path, data) -> true | nil, message.
 * Appends data to the file at path (created with mode 0644 if missing) and fsyncs it.
 */
static int append_sync(lua_State *L)
{
	size_t len, done = 0;
	const char *path = luaL_checkstring(L, 1);
	const char *data = luaL_checklstring(L, 2, &len);
	int created = 1, err;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST) {
		created = 0;
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	if (fd < 0)
		return append_fail(L, path, errno);
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			close(fd);
			return append_fail(L, path, err);
		}
		done += (size_t)n;
	}
	if (fsync(fd) != 0) {
		err = errno;
		close(fd);
		return append_fail(L, path, err);
	}
	if (close(fd) != 0)
		return append_fail(L, path, errno);
	if (created && (err = sync_parent(L, path)) != 0)
		return append_fail(L, path, err);
	lua_pushboolean(L, 1);
	return 1;
}

void vidu_open_append(lua_State *L)
{
	lua_pushcfunction(L, append_sync);
	lua_setfield(L, -2, "append_sync");
}
