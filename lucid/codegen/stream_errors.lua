-- The error line of a REST server stream that fails after its first message
-- (lucid.codegen.edgeconfig inlines this file after the generated tables below the
-- CONFIG line). It sits between the transcoder and the router, so it sees the gRPC
-- frames of a response before they become NDJSON, and acts on server-streaming routes
-- only (their route is known once the transcoder has matched the REST path, too late
-- for a per-route switch). edge.lua has told the cluster that its caller reads NDJSON
-- (STREAM_ERRORS_HEADER), so an error after the first message also travels as one last
-- message carrying the envelope. This step finds that message (its payload starts with
-- STREAM_ERROR_TAG), keeps the envelope in the stream's metadata for edge.lua and hands
-- the transcoder an empty message in its place; edge.lua writes the envelope as the
-- stream's last line.
-- CONFIG

-- The envelope in a marker payload: the tag, a varint length, the JSON text.
local function envelope_of(payload)
  local length, shift, at = 0, 0, #STREAM_ERROR_TAG + 1
  while at <= #payload do
    local byte = string.byte(payload, at)
    length = length + (byte % 128) * (2 ^ shift)
    shift = shift + 7
    at = at + 1
    if byte < 128 then
      return string.sub(payload, at, at + length - 1)
    end
  end
  return nil
end

function envoy_on_response(handle)
  local marks = handle:streamInfo():dynamicMetadata():get("lucid.edge") or {}
  local route = handle:streamInfo():routeName() or ""
  if marks["grpc"] == "1" or string.find(route, STREAM_ROUTE, 1, true) ~= 1 then
    return
  end
  local need = 0 -- payload bytes of the current frame still to come
  local head = "" -- the part of a frame header seen so far (a header may span chunks)
  for chunk in handle:bodyChunks() do
    local size = chunk:length()
    local at = 0
    while at < size do
      if need > 0 then
        local take = math.min(need, size - at)
        at = at + take
        need = need - take
      else
        local got = chunk:getBytes(at, math.min(5 - #head, size - at))
        local whole = #head == 0 and #got == 5
        head = head .. got
        at = at + #got
        if #head == 5 then
          local b1, b2, b3, b4 = string.byte(head, 2, 5)
          need = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
          head = ""
          if whole and need > #STREAM_ERROR_TAG and at + need <= size
              and chunk:getBytes(at, #STREAM_ERROR_TAG) == STREAM_ERROR_TAG then
            local envelope = envelope_of(chunk:getBytes(at, need))
            if envelope ~= nil then
              handle:streamInfo():dynamicMetadata():set("lucid.edge", "stream_error", envelope)
              local before = at > 5 and chunk:getBytes(0, at - 5) or ""
              local after = at + need < size and chunk:getBytes(at + need, size - at - need) or ""
              chunk:setBytes(before .. "\0\0\0\0\0" .. after) -- an empty message instead
              need = 0
              size = chunk:length()
            end
          end
        end
      end
    end
  end
end
