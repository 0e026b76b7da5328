-- A private CA made with openssl at test time, a leaf certificate for 127.0.0.1 signed by it,
-- a second unrelated CA, a hashed directory holding only the first CA, and
-- `openssl s_server -www` serving with the leaf on a loopback port.
--
--   local tls = require("support.tls").start()
--   tls.url            -- https://127.0.0.1:PORT/
--   tls.dir            -- ca.pem, other.pem, leaf.pem, hashed/ (for ca_path / SSL_CERT_DIR)
--   tls:stop()
local testserver = require("support.testserver_process")

local M = {}

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end
M.sh = sh

-- A self-signed CA certificate and key under dir/<name>.pem, dir/<name>.key.
local function make_ca(dir, name, cn)
  assert(sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes " ..
    "-keyout %s/%s.key -out %s/%s.pem -days 2 -subj '/CN=%s' " ..
    "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign " ..
    "2>/dev/null"):format(dir, name, dir, name, cn)))
end

local Tls = {}
Tls.__index = Tls

--- Makes the certificates and starts the server; raises when openssl fails.
function M.start()
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir " .. dir))
  make_ca(dir, "ca", "lua-vidu test CA")
  make_ca(dir, "other", "some other CA")
  local f = assert(io.open(dir .. "/leaf.ext", "wb"))
  f:write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" ..
    "extendedKeyUsage=serverAuth\n")
  f:close()
  assert(sh(("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes " ..
    "-keyout %s/leaf.key -out %s/leaf.csr -subj /CN=127.0.0.1 2>/dev/null"):format(dir, dir)))
  assert(sh(("openssl x509 -req -in %s/leaf.csr -CA %s/ca.pem -CAkey %s/ca.key " ..
    "-CAcreateserial -days 2 -out %s/leaf.pem -extfile %s/leaf.ext 2>/dev/null")
    :format(dir, dir, dir, dir, dir)))
  assert(sh(("mkdir %s/hashed && cp %s/ca.pem %s/hashed/ && openssl rehash %s/hashed")
    :format(dir, dir, dir, dir)))
  local server = testserver.spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s/leaf.pem " ..
    "-key %s/leaf.key -www 2>/dev/null"):format(dir, dir), "^ACCEPT")
  return setmetatable({
    dir = dir, server = server,
    url = "https://127.0.0.1:" .. server.line:match(":(%d+)%s*$") .. "/",
  }, Tls)
end

--- Stops the server and removes the certificates.
function Tls:stop()
  if self.server then self.server:stop() end
  sh("rm -rf " .. self.dir)
end

return M
