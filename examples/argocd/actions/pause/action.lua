-- Pause: no promotion, no demotion, no rollback until resumed.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.paused = true
return obj
