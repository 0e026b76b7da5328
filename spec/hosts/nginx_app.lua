--- The handlers' side of spec/hosts/nginx.conf: one vidu client per worker, and a generation
-- run on vidu's scheduler while the handler waits without blocking the worker.
local vidu = require("vidu")
local ngx_host = require("vidu.hosts.ngx")

local M = {}

local client -- one per worker, made on first use

--- Submits a generation and waits for it: true, task | false, error.
function M.generate(prompt)
  -- VIDU_BASE_URL unset: Vidu's own API. (nginx passes only the variables named by `env`.)
  client = client or vidu.client("vidu", { api_key = os.getenv("VIDU_API_KEY"),
    base_url = os.getenv("VIDU_BASE_URL") })
  local image = os.getenv("VIDU_IMAGE")
  -- Read what the request holds here: the job runs in the scheduler's timer, not this request.
  local job = vidu.spawn(function()
    local task = assert(client:submit{ image = image, prompt = prompt })
    assert(task:wait{ timeout = 600 })
    return task
  end)
  return ngx_host.wait(job)
end

return M
