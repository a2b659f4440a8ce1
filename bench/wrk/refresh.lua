-- Refresh chains: run with as many threads as connections, so that each thread drives one
-- connection and one chain: it sends its newest refresh token, waits for the answer and takes
-- the new token from it. The first tokens are in WRK_TOKENS, one a line, one per thread.
-- WRK_REFRESH_MODE "body" sends {"refresh_token": ...}; "header" sends it as a bearer token.
local tokens = {}
for line in io.lines(os.getenv("WRK_TOKENS")) do tokens[#tokens + 1] = line end
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("current", tokens[counter])
end

local header_mode = os.getenv("WRK_REFRESH_MODE") == "header"

function request()
  if header_mode then
    return wrk.format("POST", nil, {["Authorization"] = "Bearer " .. current}, nil)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    '{"refresh_token": "' .. current .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    current = body:match('"refresh_token"%s*:%s*"([^"]+)"') or current
  end
end
