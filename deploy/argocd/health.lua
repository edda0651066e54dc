-- Argo CD health of the imagescan.io kinds (ImagePipeline, FindingsPolicy, InspectorActivation), read from the
-- kstatus conditions the operator writes: Ready (always there once the operator has handled the object),
-- Reconciling and Stalled (present only while true), Paused, and status.observedGeneration.
-- Installed through argocd-cm's resource.customizations.health.imagescan.io_<Kind> (deploy/README.md).
-- tests/unit/test_argocd_health.py runs it over objects in every state.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function said(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return default
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator applies the deletionPolicy, then removes its finalizer"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

-- Conditions written for an older spec say nothing about the current one.
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to handle generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")
local paused = condition(conditions, "Paused")

-- Stalled: the spec or AWS must change; retrying alone will not fix it.
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(stalled, "Stalled")
  return hs
end
if paused ~= nil and paused.status == "True" then
  hs.status = "Suspended"
  hs.message = said(paused, "Paused (imagescan.io/paused annotation)")
  return hs
end
-- Reconciling: work in progress or a failure that clears by itself (throttling, a scan still running).
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = said(reconciling, "Reconciling")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(ready, "Ready")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = said(ready, "Not ready")
  return hs
end
hs.status = "Progressing"
hs.message = said(ready, "Waiting for the Ready condition")
return hs
