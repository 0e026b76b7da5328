--- The handlers' side of spec/hosts/nginx.conf: one vidu client per worker, and a generation
-- run on vidu's scheduler while the handler waits without blocking the worker.
local vidu = require("vidu")
local ngx_host = require("vidu.hosts.ngx")

local M = {}

local client -- one per worker, made on first use

--- Submits a generation and waits for it: true, task | false, error.
function M.generate(prompt)
  client = client or vidu.client("vidu", { api_key = "nginx-key", base_url = os.getenv("VIDU_EMU_URL") })
  local image = os.getenv("VIDU_ROOT") .. "/spec/fixtures/png_33x17.png"
  -- Read what the request holds here: the job runs in the scheduler's timer, not this request.
  local job = vidu.spawn(function()
    local task = assert(client:submit{ image = image, prompt = prompt })
    assert(task:wait{ timeout = 120 })
    return task
  end)
  return ngx_host.wait(job)
end

return M
