-- identity.lua: passes every message through unchanged (the benchmark's processor).
return function(msg) return msg end
