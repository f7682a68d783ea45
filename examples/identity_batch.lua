-- identity_batch.lua: passes every message through, one call per batch.
return {
  batch = function(batch)
    local out = {}
    for i = 1, #batch do out[i] = batch[i] end
    return out
  end,
}
