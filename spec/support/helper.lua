-- Loaded by busted once, before any spec file (see .busted). Busted "insulates" spec files by
-- unloading the modules each one required; luv keeps its event loop in its module and
-- vidu.core keeps libcurl's one-time init, so unloading and reloading them mid-run would crash.
-- Loading them here, outside any insulated file, keeps one instance for the whole run.
require("luv")
require("cjson")
require("vidu.core")

-- VIDU_GC=aggressive (make sanitize GC=aggressive): a collection cycle starts as soon as the
-- last one ends, so a userdata freed too early, or memory libcurl still points at, is found.
if os.getenv("VIDU_GC") == "aggressive" then
  collectgarbage("setpause", 0)
end
