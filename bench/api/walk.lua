-- wrk script: walk a range page by page (limit=100) following the API's cursors; restart at the
-- first page when the last one is reached. Every connection of a thread shares the thread's
-- current cursor, which is fine: any cursor of this query is valid on any request.
local start_ts = os.getenv("WALK_START")
local end_ts = os.getenv("WALK_END")
local base = os.getenv("BASE")
local cursor = nil

request = function()
  local path = base .. "?start=" .. start_ts .. "&end=" .. end_ts .. "&limit=100"
  if cursor then path = path .. "&after=" .. cursor end
  return wrk.format("GET", path)
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
    cursor = nil
    return
  end
  cursor = string.match(body, '"cursor": "([A-Za-z0-9_-]+)"')
end
