-- bench/lua_batch/uppercase_batch.lua: examples/uppercase.lua written as a batch processor, for
-- bench/lua to compare the two forms (BENCH_SCRIPTS="uppercase uppercase_batch").
return {
  batch = function(batch)
    local res = {}
    for i = 1, #batch do
      res[i] = batch[i].payload:upper()
    end
    return res
  end,
}
