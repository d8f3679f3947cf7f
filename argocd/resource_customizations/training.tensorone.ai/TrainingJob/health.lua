-- Argo CD health of a training.tensorone.ai/TrainingJob, from the status the operator writes.
--
--   Progressing  no status yet; status.observedGeneration behind metadata.generation (the operator
--                has not acted on the latest spec); phase Pending, Queued or Stopping; Running
--                while a Restarting condition is True (pods being replaced after a failure)
--   Suspended    phase Stopped (spec.suspend: true; resume by setting it back to false in Git)
--   Healthy      phase Completed; phase Running with no Stalled or Restarting condition;
--                phase Cancelled (spec.cancel: true is what Git asked for: a deliberate end,
--                not a fault to alert on)
--   Degraded     phase Failed; a Stalled condition that is True in any phase (the job cannot make
--                progress without a change: dataset missing, no such GPU, bad configuration)
local health = {}

local function condition(status, conditionType)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  health.status = "Progressing"
  health.message = "Waiting for the operator to act on the TrainingJob"
  return health
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  health.status = "Progressing"
  health.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return health
end

local phase = status.phase
-- An empty message counts as none, so the fallback text shows instead of a blank.
local message = status.message
if message == "" then
  message = nil
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" and phase ~= "Completed" and phase ~= "Cancelled" then
  health.status = "Degraded"
  health.message = describe(stalled, message or "The job is stalled")
  return health
end

if phase == "Completed" then
  health.status = "Healthy"
  health.message = message or "Training completed"
elseif phase == "Failed" then
  health.status = "Degraded"
  health.message = describe(condition(status, "Failed"), message or "Training failed")
elseif phase == "Cancelled" then
  health.status = "Healthy"
  health.message = message or "Cancelled by spec.cancel"
elseif phase == "Stopped" then
  health.status = "Suspended"
  health.message = message or "Stopped by spec.suspend; set it to false to resume"
elseif phase == "Running" then
  local restarting = condition(status, "Restarting")
  if restarting ~= nil and restarting.status == "True" then
    health.status = "Progressing"
    health.message = describe(restarting, "Restarting after a pod failure")
  else
    health.status = "Healthy"
    health.message = message or "Training is running"
  end
else
  -- Pending, Queued, Stopping, or a phase this script does not know yet.
  health.status = "Progressing"
  health.message = message or ("Phase " .. tostring(phase or "unknown"))
end
return health
