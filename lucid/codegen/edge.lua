-- The edge's own steps around Envoy's filters (lucid.codegen.edgeconfig inlines this
-- file after the generated tables below the CONFIG line).
-- Request: marks gRPC and grpc-web calls, answers CORS preflights, refuses non-JSON
-- bodies, maps /health to the gateway's aggregated health.
-- Response: security and CORS headers (the console's own policy under /admin/); for REST
-- calls, the JSON error envelope (the one the cluster sent in its trailer, else one made
-- from grpc-status) and NDJSON streams (with a last {"error": ...} line when a stream
-- fails after its first message).
-- CONFIG

local function mark(handle, key, value)
  handle:streamInfo():dynamicMetadata():set("lucid.edge", key, value)
end

local function marks(handle)
  return handle:streamInfo():dynamicMetadata():get("lucid.edge") or {}
end

local function json_string(text)
  local escaped = text:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

-- CORS (the allowed origins come from configuration): a preflight is answered here.
local function preflight(handle, origin)
  local h = handle:headers()
  local refused = not ORIGINS[origin] or not CORS_METHODS[h:get("access-control-request-method")]
  for name in string.gmatch(h:get("access-control-request-headers") or "", "[^,%s]+") do
    if not CORS_ALLOW_HEADERS[string.lower(name)] then
      refused = true
    end
  end
  if refused then
    h:replace(REFUSED_HEADER, "origin")
    handle:respond({[":status"] = "403"}, "origin, method or headers not allowed")
    return
  end
  handle:respond({
    [":status"] = "204",
    ["access-control-allow-origin"] = origin,
    ["access-control-allow-methods"] = CORS_METHODS_TEXT,
    ["access-control-allow-headers"] = CORS_ALLOW_HEADERS_TEXT,
    ["access-control-max-age"] = "600",
    ["vary"] = "Origin",
  }, "")
end

-- Whether a JSON text nests deeper than the limit (strings skipped).
local function nested_deeper(text, limit)
  local depth, at = 0, 1
  while true do
    local found = string.find(text, '[%[%]{}"]', at)
    if found == nil then
      return false
    end
    local c = string.sub(text, found, found)
    at = found + 1
    if c == '"' then
      while true do
        local stop = string.find(text, '["\\]', at)
        if stop == nil then
          return false
        end
        if string.sub(text, stop, stop) == "\\" then
          at = stop + 2
        else
          at = stop + 1
          break
        end
      end
    elseif c == "{" or c == "[" then
      depth = depth + 1
      if depth > limit then
        return true
      end
    else
      depth = depth - 1
    end
  end
end

-- JSON bodies up to DEPTH_CHECK_BYTES are read here for their depth (larger ones are
-- chunk uploads, whose depth the transcoder's parser bounds).
local function too_deep(handle)
  local length = tonumber(handle:headers():get("content-length") or "")
  if length == nil or length == 0 or length > DEPTH_CHECK_BYTES then
    return false
  end
  local body = handle:body()
  return body ~= nil and nested_deeper(body:getBytes(0, body:length()), MAX_JSON_DEPTH)
end

-- Over-long URLs (414) and header sets (431), refused before anything reads them.
local function over_long(handle)
  local h = handle:headers()
  if #(h:get(":path") or "") > MAX_URL_BYTES then
    handle:respond({[":status"] = "414"}, "the URL is longer than " .. MAX_URL_BYTES .. " bytes")
    return true
  end
  local size, count = 0, 0
  for name, value in pairs(h) do
    size = size + #name + #value
    count = count + 1
  end
  if size > MAX_HEADER_BYTES or count > MAX_HEADERS then
    handle:respond({[":status"] = "431"}, "more than " .. MAX_HEADERS .. " headers or " .. MAX_HEADER_BYTES .. " bytes of them")
    return true
  end
  return false
end

function envoy_on_request(handle)
  local h = handle:headers()
  h:remove(REFUSED_HEADER)
  mark(handle, "request_id", h:get("x-request-id") or "")
  if over_long(handle) then
    return
  end
  if string.find(h:get(":path") or "", CONSOLE_PREFIX, 1, true) == 1 then
    mark(handle, "console", "1")
  end
  local kind = h:get("content-type") or ""
  local method = h:get(":method")
  local grpc = string.find(kind, "application/grpc", 1, true) == 1
  h:remove(STREAM_ERRORS_HEADER)
  if grpc then
    mark(handle, "grpc", "1")
    return
  end
  h:add(STREAM_ERRORS_HEADER, "ndjson") -- a REST caller: a stream's error comes as a line
  local origin = h:get("origin") or ""
  if ORIGINS[origin] then
    mark(handle, "origin", origin)
  end
  if method == "OPTIONS" and h:get("access-control-request-method") ~= nil then
    return preflight(handle, origin)
  end
  if kind ~= "" and string.find(kind, "application/json", 1, true) ~= 1
      and method ~= "GET" and method ~= "HEAD" then
    handle:respond({[":status"] = "415"}, "expected application/json, got " .. kind)
    return
  end
  if kind ~= "" and too_deep(handle) then
    handle:headers():replace(REFUSED_HEADER, "depth")
    handle:respond({[":status"] = "400"}, "JSON nested deeper than " .. MAX_JSON_DEPTH .. " levels")
    return
  end
  if h:get(":path") == HEALTH_PATH then
    h:replace(":path", AGGREGATED_HEALTH)
    handle:clearRouteCache()
  end
end

local function decode(text)
  return (text:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- An envelope for an error that came without one (a bare status from a cluster or
-- Envoy's own refusal of a transcoded call): from grpc-status, or from the body the
-- transcoder made of it.
local function fallback_envelope(handle, code, forced)
  local message = json_string(decode(handle:headers():get("grpc-message") or ""))
  if code == nil then
    local body = handle:body(true)
    local text = body and body:getBytes(0, body:length()) or ""
    code = text:match('"code"%s*:%s*(%d+)') or "2"
    local said = text:match('"message"%s*:%s*"(.-)"%s*[,}]')
    if said ~= nil and said:sub(-1) ~= "\\" then
      message = '"' .. said .. '"'
    end
  end
  local known = FALLBACK[code] or FALLBACK["2"]
  if forced ~= nil then
    known = {forced:match("^(%S+) (%S+)$")}
  end
  return '{"error":{"code":' .. json_string(known[1])
    .. ',"message":' .. message
    .. ',"details":{},"request_id":' .. json_string(marks(handle)["request_id"] or "")
    .. ',"timestamp":' .. json_string(os.date("!%Y-%m-%dT%H:%M:%S.000Z"))
    .. ',"service":' .. json_string(known[2]) .. ',"version":"v1"}}'
end

-- A server stream's NDJSON: when the stream failed after its first message
-- (stream_errors.lua found the cluster's last message with the envelope and left the
-- envelope in the metadata), that message's line becomes the envelope: the client's
-- last line is {"error": ...} (the HTTP status, sent with the first line, stays 200).
local function ndjson(handle)
  local route = handle:streamInfo():routeName() or ""
  if string.find(route, STREAM_ROUTE, 1, true) ~= 1 then
    return
  end
  handle:headers():replace("content-type", "application/x-ndjson")
  local done = false
  for chunk in handle:bodyChunks() do
    local failed = not done and marks(handle)["stream_error"]
    if failed and chunk:length() > 0 then
      local text = chunk:getBytes(0, chunk:length())
      local start = string.match(string.gsub(text, "\n$", ""), ".*\n()") or 1
      chunk:setBytes(string.sub(text, 1, start - 1) .. failed .. "\n")
      done = true
    end
  end
end

function envoy_on_response(handle)
  local h = handle:headers()
  for name, value in pairs(SECURITY_HEADERS) do
    h:replace(name, value)
  end
  if marks(handle)["console"] == "1" then
    h:replace("content-security-policy", CONSOLE_CSP)
  end
  local origin = marks(handle)["origin"]
  if origin ~= nil then
    h:replace("access-control-allow-origin", origin)
    h:replace("access-control-expose-headers", CORS_EXPOSE_HEADERS)
    h:add("vary", "Origin")
  end
  local envelope = h:get(ENVELOPE_TRAILER)
  local status = h:get(STATUS_TRAILER)
  h:remove(ENVELOPE_TRAILER)
  h:remove(STATUS_TRAILER)
  local forced = h:get(LOCAL_CODE_HEADER)
  h:remove(LOCAL_CODE_HEADER)
  if marks(handle)["grpc"] == "1" then
    return
  end
  local code = h:get("grpc-status")
  h:remove("grpc-status-details-bin")
  if envelope == nil then
    local http = tonumber(h:get(":status")) or 200
    if code == "0" or (code == nil and http < 400) then
      ndjson(handle)
      return
    end
    if code == nil and forced ~= nil then
      return -- Envoy's own reply to a REST call: the mapper wrote the envelope
    end
    envelope = fallback_envelope(handle, code, forced)
  end
  -- buffering the body yields: headers must be fetched again after it
  local body = handle:body(true)
  if body ~= nil then
    body:setBytes(envelope)
  end
  h = handle:headers()
  if status ~= nil then
    h:replace(":status", status)
  end
  local wait = envelope:match('"retry_after_seconds"%s*:%s*([%d%.]+)')
  if wait ~= nil then
    h:replace("retry-after", tostring(math.max(1, math.ceil(tonumber(wait)))))
  end
  h:replace("content-type", "application/json")
  h:replace("content-length", tostring(#envelope))
end
