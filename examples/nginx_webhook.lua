--- The handlers of examples/nginx-webhook.conf: Vidu callbacks verified with vidu.webhooks and
-- delivered to the tasks waiting in this worker (client:deliver), and a handler that submits
-- generations whose callbacks finish them.
-- luacheck: globals ngx
local vidu = require("vidu")
local webhooks = require("vidu.webhooks")
local ngx_host = require("vidu.hosts.ngx")

local M = {}

local client -- one per worker, made on first use

local function the_client()
  -- Polling only as a slow fallback: the callbacks finish the tasks. VIDU_BASE_URL unset:
  -- Vidu's own API. (nginx passes only the variables named by `env`.)
  client = client or vidu.client("vidu", { api_key = os.getenv("VIDU_API_KEY"),
    base_url = os.getenv("VIDU_BASE_URL"), poll = { first = 600, max = 600 } })
  return client
end

--- POST /webhooks/vidu: verify, then deliver; 200 when verified, 401 otherwise.
function M.receive()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local ok, err = webhooks.verify("vidu", { method = ngx.req.get_method(),
    path = ngx.var.request_uri, headers = ngx.req.get_headers(), body = body },
    { secret = os.getenv("VIDU_API_KEY") })
  if not ok then
    ngx.status = 401
    return ngx.say(err.code)
  end
  -- Vidu's signature covers the request line and headers, not the body: a receiver that acts
  -- on money confirms the state with a poll. Here the task's own wait is all that follows.
  the_client():deliver(body)
  ngx.say("ok")
end

--- GET /gen-callback?n=N: N generations whose callback_url is this server, each downloaded
-- into VIDU_OUT (default /tmp) once its callback finished it; answers "done N" with the
-- number downloaded.
function M.generate(n)
  local c = the_client()
  local image = os.getenv("VIDU_IMAGE")
  local out = os.getenv("VIDU_OUT") or "/tmp"
  local hook = ngx.var.scheme .. "://" .. ngx.var.host .. ":" .. ngx.var.server_port
    .. "/webhooks/vidu"
  local job = vidu.spawn(function()
    local tasks = {}
    for i = 1, n do
      tasks[i] = assert(c:submit{ image = image, seed = i, callback_url = hook })
    end
    local done = 0
    local results = vidu.gather(tasks, { timeout = 600 })
    for i, r in ipairs(results) do
      if r.ok and tasks[i]:download(string.format("%s/%s.mp4", out, tasks[i].id)) then
        done = done + 1
      end
    end
    return done
  end)
  local ok, done = ngx_host.wait(job)
  if not ok then
    ngx.status = 500
    return ngx.say("failed: ", tostring(done))
  end
  ngx.say("done ", done)
end

return M
