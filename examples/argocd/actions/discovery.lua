-- Argo CD resource actions for jeffreyos.io/JeffreyIntegration: which are offered, and which are
-- enabled for this object. Same sandbox as health.lua (no string library).
--   retry   restart the climb after a rollback (or an invalid spec was fixed): sets the
--           jeffreyos.io/retry annotation; enabled in RolledBack and Invalid
--   pause   freeze the integration (spec.paused = true); enabled while not paused
--   resume  unfreeze it (spec.paused = false); enabled while paused
local actions = {}

local paused = obj.spec ~= nil and obj.spec.paused == true
local phase = ""
if obj.status ~= nil and obj.status.phase ~= nil then
  phase = obj.status.phase
end

actions["retry"] = {
  ["disabled"] = paused or not (phase == "RolledBack" or phase == "Invalid"),
  ["iconClass"] = "fa fa-fw fa-redo",
  ["displayName"] = "Retry the climb",
}
actions["pause"] = {
  ["disabled"] = paused,
  ["iconClass"] = "fa fa-fw fa-pause-circle",
  ["displayName"] = "Pause",
}
actions["resume"] = {
  ["disabled"] = not paused,
  ["iconClass"] = "fa fa-fw fa-play-circle",
  ["displayName"] = "Resume",
}
return actions
