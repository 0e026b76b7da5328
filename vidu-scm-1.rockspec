-- luarocks: `luarocks make` builds vidu.core and installs the Lua layer and the emulator.
rockspec_format = "3.0"
package = "vidu"
version = "scm-1"

source = {
  url = "git+https://github.com/lua-vidu/lua-vidu.git",
}

description = {
  summary = "Image-to-video with Vidu models from Lua, through fal, Vidu, WaveSpeed, Vtrix or a relay",
  detailed = [[
A C core (libcurl multi engine, base64, image header inspection) under a thin Lua layer:
provider clients, tasks, and a coroutine scheduler whose waits never block a host loop.
Ships bin/vidu (generate, batch, resume, status, cancel, report, with a journal that survives
kill -9) and bin/vidu-emulator, an offline emulator of all five providers' wire contracts.
]],
  license = "MIT",
  labels = { "video", "ai", "http", "libcurl", "coroutines" },
}

dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
  "luv", -- bin/vidu-emulator and vidu.emulator (the library itself does not load it)
}

test_dependencies = {
  "busted",
}

-- libcurl's header and library. Debian and Ubuntu keep the header in the multiarch include
-- directory, which luarocks does not search: pass CURL_INCDIR=/usr/include/$(gcc -print-multiarch)
-- there (the README's command does). Elsewhere CURL_DIR=<prefix> when libcurl is not under
-- /usr or /usr/local.
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
}

build = {
  type = "builtin",
  modules = {
    ["vidu.core"] = {
      sources = { "csrc/append.c", "csrc/b64.c", "csrc/core.c", "csrc/crypto.c", "csrc/engine.c",
        "csrc/image.c", "csrc/util.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      -- libcurl's headers and library, where external_dependencies found them; libcrypto
      -- (OpenSSL, Debian libssl-dev) from the system's default paths
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
    ["vidu.batch"] = "lua/vidu/batch.lua",
    ["vidu.cli"] = "lua/vidu/cli.lua",
    ["vidu.client"] = "lua/vidu/client.lua",
    ["vidu.emulator.client"] = "lua/vidu/emulator/client.lua",
    ["vidu.emulator.control"] = "lua/vidu/emulator/control.lua",
    ["vidu.emulator.faults"] = "lua/vidu/emulator/faults.lua",
    ["vidu.emulator.http"] = "lua/vidu/emulator/http.lua",
    ["vidu.emulator.image"] = "lua/vidu/emulator/image.lua",
    ["vidu.emulator"] = "lua/vidu/emulator/init.lua",
    ["vidu.emulator.json"] = "lua/vidu/emulator/json.lua",
    ["vidu.emulator.log"] = "lua/vidu/emulator/log.lua",
    ["vidu.emulator.media"] = "lua/vidu/emulator/media.lua",
    ["vidu.emulator.proc"] = "lua/vidu/emulator/proc.lua",
    ["vidu.emulator.providers.fal"] = "lua/vidu/emulator/providers/fal.lua",
    ["vidu.emulator.providers.relay"] = "lua/vidu/emulator/providers/relay.lua",
    ["vidu.emulator.providers.vidu"] = "lua/vidu/emulator/providers/vidu.lua",
    ["vidu.emulator.providers.vtrix"] = "lua/vidu/emulator/providers/vtrix.lua",
    ["vidu.emulator.providers.wavespeed"] = "lua/vidu/emulator/providers/wavespeed.lua",
    ["vidu.emulator.rng"] = "lua/vidu/emulator/rng.lua",
    ["vidu.emulator.router"] = "lua/vidu/emulator/router.lua",
    ["vidu.emulator.sign"] = "lua/vidu/emulator/sign.lua",
    ["vidu.emulator.tasks"] = "lua/vidu/emulator/tasks.lua",
    ["vidu.emulator.uploads"] = "lua/vidu/emulator/uploads.lua",
    ["vidu.emulator.util"] = "lua/vidu/emulator/util.lua",
    ["vidu.emulator.webhook"] = "lua/vidu/emulator/webhook.lua",
    ["vidu.errors"] = "lua/vidu/errors.lua",
    ["vidu.hosts.luv"] = "lua/vidu/hosts/luv.lua",
    ["vidu.hosts.ngx"] = "lua/vidu/hosts/ngx.lua",
    ["vidu.files"] = "lua/vidu/files.lua",
    ["vidu.http"] = "lua/vidu/http.lua",
    ["vidu.images"] = "lua/vidu/images.lua",
    ["vidu"] = "lua/vidu/init.lua",
    ["vidu.journal"] = "lua/vidu/journal.lua",
    ["vidu.json"] = "lua/vidu/json.lua",
    ["vidu.launch"] = "lua/vidu/launch.lua",
    ["vidu.pace"] = "lua/vidu/pace.lua",
    ["vidu.plan"] = "lua/vidu/plan.lua",
    ["vidu.prices"] = "lua/vidu/prices.lua",
    ["vidu.progress"] = "lua/vidu/progress.lua",
    ["vidu.providers"] = "lua/vidu/providers/init.lua",
    ["vidu.providers.common"] = "lua/vidu/providers/common.lua",
    ["vidu.providers.fal"] = "lua/vidu/providers/fal.lua",
    ["vidu.providers.fields"] = "lua/vidu/providers/fields.lua",
    ["vidu.providers.relay"] = "lua/vidu/providers/relay.lua",
    ["vidu.providers.vidu"] = "lua/vidu/providers/vidu.lua",
    ["vidu.providers.vidu_api"] = "lua/vidu/providers/vidu_api.lua",
    ["vidu.providers.vidu_batch"] = "lua/vidu/providers/vidu_batch.lua",
    ["vidu.providers.vidu_models"] = "lua/vidu/providers/vidu_models.lua",
    ["vidu.providers.vtrix"] = "lua/vidu/providers/vtrix.lua",
    ["vidu.providers.wavespeed"] = "lua/vidu/providers/wavespeed.lua",
    ["vidu.report"] = "lua/vidu/report.lua",
    ["vidu.retry"] = "lua/vidu/retry.lua",
    ["vidu.scheduler"] = "lua/vidu/scheduler.lua",
    ["vidu.sse"] = "lua/vidu/sse.lua",
    ["vidu.task"] = "lua/vidu/task.lua",
    ["vidu.url"] = "lua/vidu/url.lua",
    ["vidu.validate"] = "lua/vidu/validate.lua",
    ["vidu.webhooks"] = "lua/vidu/webhooks.lua",
  },
  install = {
    bin = { ["vidu"] = "bin/vidu", ["vidu-emulator"] = "bin/vidu-emulator" },
    -- the emulator's fallback video and cover, found beside its modules
    lua = {
      ["vidu.emulator.assets.fallback"] = "lua/vidu/emulator/assets/fallback.mp4",
      ["vidu.emulator.assets.cover"] = "lua/vidu/emulator/assets/cover.jpg",
    },
  },
  copy_directories = { "examples" },
}

test = {
  type = "busted",
}
