-- Retry: give the jeffreyos.io/retry annotation a new value. The operator acts once per new
-- value (status.lastRetryToken), so a retry is never replayed. The value is the UTC time,
-- made unique if the annotation already holds it (two clicks within one second).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local token = os.date("!%Y-%m-%dT%H:%M:%SZ")
if obj.metadata.annotations["jeffreyos.io/retry"] == token then
  token = token .. "-" .. tostring(os.time())
end
obj.metadata.annotations["jeffreyos.io/retry"] = token
return obj
