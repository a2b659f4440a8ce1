-- POST a JSON login, the users (name TAB password, one a line, in WRK_USERS) taken in turn.
local bodies = {}
for line in io.lines(os.getenv("WRK_USERS")) do
  local name, password = line:match("^([^\t]+)\t(.+)$")
  bodies[#bodies + 1] = '{"username": "' .. name .. '", "password": "' .. password .. '"}'
end

function request()
  next_index = next_index % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[next_index])
end
