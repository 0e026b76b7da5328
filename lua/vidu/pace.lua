--- Pace: when to poll next, learned from the tasks of one client.
--
-- A batch of generations on one client (the same model and settings, a grid of prompts or
-- seeds) takes about the same time each. The pace remembers the shortest time from submit
-- to "succeeded" seen so far (an upper bound of how long such a task takes), and every
-- waiting task then looks at that age instead of sleeping through it on a long backoff gap.
-- When the estimate first appears or shrinks, the pace's event fires and wakes every task
-- sleeping on it, so one task seeing its video tells all the others to look now.
--
-- Polls also carry jitter (+-20% of each gap), so a burst of tasks submitted together does
-- not poll in lockstep: some look a little early, some a little late, and the first to see
-- a finish teaches the rest.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local Pace = {}
Pace.__index = Pace

local JITTER = 0.2
-- Once a task is older than the estimate it is overdue: it looks again after this share of
-- the estimate (at least MIN_GAP), then backs off by the schedule's factor from there.
local OVERDUE_SHARE = 0.1
local MIN_GAP = 0.5

--- A pace for one client: scheduler gives the clock and the events; random is a function
-- returning a number in [0, 1) (math.random by default).
function Pace.new(scheduler, random)
  return setmetatable({ scheduler = scheduler, random = random or math.random,
    estimate = nil, event = scheduler:event() }, Pace)
end

--- A gap with +-20% jitter.
function Pace:jitter(gap)
  return gap * (1 + JITTER * (2 * self.random() - 1))
end

--- Learns from a task seen finished `age` seconds after its submit (only successes of
-- tasks this process submitted: an attached task's age is unknown). Wakes the sleepers
-- when the estimate is new or shorter.
function Pace:observe(age)
  if age <= 0 or (self.estimate and age >= self.estimate) then return end
  self.estimate = age
  local ev = self.event
  self.event = self.scheduler:event()
  self.scheduler:signal(ev)
end

--- The delay before the next poll of a task `age` seconds old whose schedule says `gap`
-- (already jittered): never past the estimated finish; once overdue, a short gap growing
-- by `factor` with each overdue poll (`overdue` counts them, from 0), capped by `gap`.
function Pace:delay(age, gap, factor, overdue)
  local est = self.estimate
  if not est then return gap end
  if age < est then
    local until_est = est - age
    return until_est < gap and until_est or gap
  end
  local short = est * OVERDUE_SHARE
  if short < MIN_GAP then short = MIN_GAP end
  short = short * factor ^ overdue
  return short < gap and short or gap
end

return Pace
