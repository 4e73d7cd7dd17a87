-- Argo CD health check for jeffreyos.io/JeffreyIntegration.
-- Runs in Argo CD's Lua sandbox: base and table libraries and os.time/os.date only (no string
-- library), `obj` is the live object, the script returns {status = ..., message = ...}.
--
--   Progressing  the operator has not seen the latest spec yet (generation ~= observedGeneration),
--                or the phase is Pending, Promoting, Validating, CoolingDown, Demoting, RollingBack
--   Healthy      Stable at the target level
--   Degraded     RolledBack or Invalid, or Stable with a failed level check (onFailure: hold)
--
-- Level checks (status.checks) that are running, inconclusive, failed or invalid are named in the
-- message, and a rollback caused by a check names it.
--   Suspended    Paused, or spec.paused
local hs = {}

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

-- "<prefix>: <reason>: <message>", leaving out what is empty.
local function describe(status, prefix)
  local out = prefix
  if status.reason ~= nil and status.reason ~= "" then
    out = out .. ": " .. text(status.reason)
  end
  if status.message ~= nil and status.message ~= "" then
    out = out .. ": " .. text(status.message)
  end
  return out
end

-- "; checks: core-smoke Running, loops-ready Fail" for the checks worth a look ("" if none).
local watched_results = {Running = true, Inconclusive = true, Fail = true, Invalid = true}
local function checks_note(status)
  local parts = {}
  for _, check in ipairs(status.checks or {}) do
    if watched_results[check.result] then
      table.insert(parts, text(check.name) .. " " .. text(check.result))
    end
  end
  if #parts == 0 then
    return ""
  end
  return "; checks: " .. table.concat(parts, ", ")
end

local function failed_checks(status)
  local names = {}
  for _, check in ipairs(status.checks or {}) do
    if check.result == "Fail" or check.result == "Invalid" then
      table.insert(names, text(check.name))
    end
  end
  return names
end

local spec = obj.spec or {}
local status = obj.status
local target = spec.targetLevel or "PRODUCTION"

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the integration"
  return hs
end

local current = status.currentLevel or "none"
local generation = obj.metadata and obj.metadata.generation
local observed = status.observedGeneration

if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. text(generation)
    .. " (observed " .. text(observed or "none") .. ")"
  return hs
end

local phase = status.phase

if phase == "Paused" or spec.paused == true then
  hs.status = "Suspended"
  hs.message = describe(status, "Paused at " .. current)
  return hs
end

if phase == "RolledBack" then
  local out = "Rolled back to " .. current
  local last = status.lastRollback
  if last ~= nil and last.fromLevel ~= nil then
    out = out .. " from " .. text(last.fromLevel)
  end
  if last ~= nil and last.check ~= nil and last.check ~= "" then
    out = out .. " (check " .. text(last.check) .. ")"
  end
  hs.status = "Degraded"
  hs.message = describe(status, out)
  return hs
end

if phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = describe(status, "Invalid spec")
  return hs
end

local transitional = {
  Pending = true,
  Promoting = true,
  Validating = true,
  CoolingDown = true,
  Demoting = true,
  RollingBack = true,
}
if transitional[phase] then
  local out = phase .. " (current " .. current .. ", target " .. target
  if status.activeLevel ~= nil then
    out = out .. ", working on " .. text(status.activeLevel)
  end
  hs.status = "Progressing"
  hs.message = describe(status, out .. ")") .. checks_note(status)
  return hs
end

if phase == "Stable" then
  local failed = failed_checks(status)
  if #failed > 0 then
    hs.status = "Degraded"
    hs.message = describe(status, "Stable at " .. current .. ", check failed: " .. table.concat(failed, ", "))
    return hs
  end
  if current == target then
    hs.status = "Healthy"
    hs.message = describe(status, "Stable at " .. current)
  else
    hs.status = "Progressing"
    hs.message = describe(status, "Stable at " .. current .. ", target " .. target)
  end
  return hs
end

hs.status = "Unknown"
hs.message = describe(status, "Unknown phase " .. text(phase))
return hs
