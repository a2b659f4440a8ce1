-- GET with a bearer token, the tokens (one a line, in WRK_TOKENS) taken in turn.
local tokens = {}
for line in io.lines(os.getenv("WRK_TOKENS")) do tokens[#tokens + 1] = line end

function request()
  next_index = next_index % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[next_index]}, nil)
end
