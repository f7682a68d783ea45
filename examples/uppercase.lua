-- uppercase.lua: the simplest processor: every payload, upper-cased, to the default output.
return function(msg)
  return msg.payload:upper()
end
