--- Pace: when to poll next, learned from the tasks of one client.
--
-- Generation times vary (the provider's queue, the model, the clip's duration), so the pace
-- learns their distribution, per kind of task, and places each task's polls where finishes
-- are likely instead of on a blind backoff.
--
-- Kinds. A task's kind is its model, duration and resolution (Pace.key, from the validated
-- params); attached tasks, whose params are unknown, use the client-wide kind, which also
-- learns from every task of the client. At most 32 kinds are kept (the least recently used
-- goes first).
--
-- What is learned. When a task this process submitted is seen succeeded, the middle between
-- its last poll seen running and that poll (its finish lies between them; the poll's own age
-- would heap every finish onto the polls that saw them). A reservoir of 64 per kind: once
-- 1,024 have been seen, each new one replaces a random kept one with probability 1/16, so the
-- sample follows a drifting queue. Failures teach nothing: a moderation refusal after 2 s says
-- nothing about how long a video takes. Tasks still waiting count too: each was seen running
-- at some age (its last poll), so its duration is longer (a censored observation, as in
-- Kaplan-Meier). Without them the first finishes of a batch, its shortest, would look like
-- the whole distribution.
--
-- The schedule (Pace.build, Pace.plan: pure functions of the samples, the waiting tasks'
-- ages, the task's age and a random source). From the samples and the waiting tasks the pace
-- estimates the hazard h(a): the chance per second that a task still running at age a
-- finishes now (finishes / time at risk, in a window of ages as wide as the samples' spread
-- suggests). A poll costs one request; a finish noticed g seconds late costs g seconds. Gaps
-- proportional to 1 / sqrt(h) minimise requests + delay for a given exchange rate, so the next
-- poll of a task last seen running at age s is at the age t where the integral of sqrt(h)
-- from s reaches the spacing (SPACING for a kind whose median is SCALE seconds, in proportion
-- to the square root of the median otherwise: about the same number of polls per task at any
-- time scale). Before the earliest likely finish h is 0 and the task sleeps (past the
-- schedule's longest gap once TRUST samples say where that is); where finishes are dense the
-- gaps shrink, never below MIN_GAP; otherwise no gap is longer than the schedule's longest.
-- No poll goes before the youngest age a task of the kind was seen done at (the hazard's window
-- reaches below it), but one task in EXPLORE may: with durations alike (1,000 WaveSpeed tasks
-- of 10 s) the polls placed there saw the task running ~0.7 times per task, and the explorers
-- still find a shorter duration if there is one, which wakes the others (see Waking).
-- Past the oldest age the pace has seen, the hazard at that edge carries on, but the front of
-- a batch looks at least every FRONT of its age (its first few finishes say little about the
-- rest). Past the Q_HIGH quantile a task is overdue: it looks again after a short gap
-- (OVERDUE_SHARE of the median, at least MIN_GAP) growing by the schedule's factor with each
-- overdue poll, never beyond the schedule's longest gap. Each delay carries +-20% jitter, so a
-- burst of tasks does not poll in lockstep (but for a poll put off to the shortest duration
-- seen: a batch's tasks reach that age as far apart as they were submitted), and counts from
-- the task's last poll, so a plan made again never pushes the next poll further out.
--
-- Scouts. Before a kind has learned anything, its tasks submitted together will finish
-- roughly in the order they were submitted, and the first finish wakes the rest (below). So
-- only its SCOUTS oldest waiting tasks (by the order their waits began) follow the schedule's
-- backoff; a younger one sleeps the schedule's longest gap, jittered, unless woken sooner: a
-- batch of 1,000 spends its cold start's polls on 16 tasks, not on every one. The cost: a
-- younger task that finishes before every scout is seen up to that gap late. The first finish
-- a scout sees tells every sleeper, so a scout's gap is at most the longest gap times
-- sqrt(SCOUTS / waiting) while more than SCOUTS tasks of its kind wait (1.9 s for 1,000 behind
-- a 15 s longest gap, never under MIN_GAP): the 16 scouts' extra polls are few beside the
-- delay they save the rest (1,000 tasks of 10 s on WaveSpeed, submitted within half a second:
-- finish->known median 2.5 s on the backoff alone, in one run of make bench-compare). Scouts
-- that end without teaching anything (failures, attached tasks) hand over: every SCOUTS / 2
-- such ends wake the kind's sleepers, and the next in line scout (tasks attached while still
-- running, a journal's after a crash, are then seen in waves of 8 as the earlier ones finish,
-- not a longest gap at a time).
--
-- Waking. When a kind learns its first duration, one shorter than any before, or its count of
-- durations doubles, its event fires and every task of that kind asleep on it plans again. A
-- task last seen running before the shortest duration and now past it looks at once: the
-- first task of a batch to finish tells the others to look (with fixed durations, each learns
-- of its finish within a fraction of a second).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
-- luacheck: ignore 212/self
local Pace = {}
Pace.__index = Pace

local JITTER = 0.2
-- The exchange rate of requests and delay: the integral of sqrt(hazard) between two polls,
-- for a kind whose typical (median) duration is SCALE seconds, and in proportion to the
-- square root of it otherwise, so that the polls per task do not depend on the time scale and
-- the delay is in proportion to it.
local SPACING = 1.0
local SCALE = 30
local LN2 = math.log(2)
local MIN_GAP = 0.5
local OVERDUE_SHARE = 0.1
local Q_HIGH = 0.95
local TRUST = 4
local SCOUTS = 16
-- One task in this many may poll before the shortest duration seen (see Pace.plan).
local EXPLORE = 16
local SAMPLES = 64
local SEEN_CAP = 1024
local KEYS = 32
local BINS = 200
local MIN_WIDTH = 0.25
-- Past the oldest age seen, the hazard is taken over the ages back to this many finishes.
local EDGE_EVENTS = 3
local FRONT = 0.4
-- A kind's hazard table is rebuilt at most this often (s), but for each new sample while it
-- has fewer than 8, and whenever its samples have doubled since (a batch's first finishes
-- come in a burst, and the sleepers they wake must not plan on the table of the first).
local REBUILD = 0.25

--- The client-wide kind: attached tasks, and every task's duration also lands here.
Pace.CLIENT = "*"

--- The kind of a task from its validated params (client:check's answer): model, duration
-- and resolution; nil params give the client-wide kind.
function Pace.key(params)
  if type(params) ~= "table" then return Pace.CLIENT end
  return tostring(params.model) .. "|" .. tostring(params.duration) .. "|" ..
    tostring(params.resolution)
end

local function quantile(sorted, q)
  local n = #sorted
  local x = q * (n - 1) + 1
  local i = math.floor(x)
  if i >= n then return sorted[n] end
  return sorted[i] + (x - i) * (sorted[i + 1] - sorted[i])
end

--- The hazard table of one kind: `samples` (durations, each standing for `weight` tasks)
-- and `alive` (ages at which waiting tasks were last seen running). -> nil without samples,
-- else { width, bins, h (hazard per bin), H (cumulative hazard at each bin's end), edge (the
-- last bin anything reached), first (the age where the hazard starts), median }.
function Pace.build(samples, weight, alive)
  local n = #samples
  if n == 0 then return nil end
  local sorted = {}
  for i = 1, n do sorted[i] = samples[i] end
  table.sort(sorted)
  -- The window: Silverman's rule on the spread, at least MIN_WIDTH.
  local mean, sq = 0, 0
  for i = 1, n do mean = mean + sorted[i] end
  mean = mean / n
  for i = 1, n do sq = sq + (sorted[i] - mean) ^ 2 end
  local spread = math.sqrt(sq / n)
  local iqr = (quantile(sorted, 0.75) - quantile(sorted, 0.25)) / 1.34
  if iqr > 0 and iqr < spread then spread = iqr end
  local w = 0.9 * spread * n ^ -0.2
  if w < MIN_WIDTH then w = MIN_WIDTH end
  local top = sorted[n]
  for i = 1, #alive do if alive[i] > top then top = alive[i] end end
  local width = w / 2
  if (top + w) / width > BINS then width = (top + w) / BINS end
  local bins = math.floor((top + w) / width) + 1
  -- Per bin: tasks whose time at risk ends in it (count, and the part of the bin they spent),
  -- and finishes.
  local ends, part, events = {}, {}, {}
  for b = 1, bins do ends[b], part[b], events[b] = 0, 0, 0 end
  local function add(age, wt, event)
    local b = math.floor(age / width) + 1
    ends[b] = ends[b] + wt
    part[b] = part[b] + (age - (b - 1) * width) * wt
    if event then events[b] = events[b] + wt end
  end
  for i = 1, n do add(sorted[i], weight, true) end
  for i = 1, #alive do if alive[i] >= 0 then add(alive[i], 1, false) end end
  -- Time at risk in each bin, then prefix sums of it and of the finishes.
  local exposure, above, edge = {}, 0, 0
  for b = bins, 1, -1 do
    exposure[b] = width * above + part[b]
    above = above + ends[b]
    if edge == 0 and exposure[b] > 0 then edge = b end
  end
  local cev, cexp = { [0] = 0 }, { [0] = 0 }
  for b = 1, bins do
    cev[b] = cev[b - 1] + events[b]
    cexp[b] = cexp[b - 1] + exposure[b]
  end
  local k = math.floor(w / width + 0.5)
  if k < 1 then k = 1 end
  local h, H, first = {}, {}, nil
  local acc = 0
  for b = 1, edge do
    local lo, hi = b - k - 1, b + k
    if lo < 0 then lo = 0 end
    if hi > edge then hi = edge end
    local ex = cexp[hi] - cexp[lo]
    local hb = ex > 0 and (cev[hi] - cev[lo]) / ex or 0
    h[b] = hb
    if hb > 0 and not first then first = (b - 1) * width end
    acc = acc + hb * width
    H[b] = acc
  end
  -- What carries on past the edge: the hazard there, or when no finish lies in its window,
  -- the hazard since the last few finishes, so the front of a batch, whose latest ages have
  -- seen no finish yet, keeps the pace of the finishes just behind it.
  local lo = edge - 2 * k - 1
  while lo > 0 and cev[edge] - cev[lo] < EDGE_EVENTS * weight do lo = lo - 1 end
  if lo < 0 then lo = 0 end
  local ex = cexp[edge] - cexp[lo]
  local beyond = h[edge]
  if beyond <= 0 and ex > 0 then beyond = (cev[edge] - cev[lo]) / ex end
  -- The typical duration: where the survival crosses 1/2, or the oldest age seen while more
  -- than half are still running (the front of a first batch).
  local typical = edge * width
  for b = 1, edge do
    if H[b] >= LN2 then
      typical = (b - 1) * width + (LN2 - (b > 1 and H[b - 1] or 0)) / h[b]
      break
    end
  end
  return { width = width, bins = bins, h = h, H = H, edge = edge, first = first or 0,
    beyond = beyond, median = quantile(sorted, 0.5), n = n, min = sorted[1],
    spacing = SPACING * math.sqrt(typical / SCALE) }
end

--- The survival at `age` by the table: the share of tasks still running at that age.
function Pace.survival(t, age)
  local b = math.floor(age / t.width) + 1
  if b > t.edge then b = t.edge end
  local before = b > 1 and t.H[b - 1] or 0
  return math.exp(-(before + t.h[b] * (age - (b - 1) * t.width)))
end

--- The next poll of a task: table `t` (Pace.build), the age `seen` at which the task was last
-- seen running, its age now, `opts` = { random, factor, overdue (its overdue polls so far),
-- max (the schedule's longest gap), explore (true: it may poll before t.min) }. -> the delay
-- from now (s, >= 0), and whether the task is overdue.
function Pace.plan(t, seen, age, opts)
  local random, max = opts.random or math.random, opts.max or 15
  local function jitter(d) return d * (1 + JITTER * (2 * random() - 1)) end
  -- The first finish of a kind, or one sooner than any before, tells a task last seen
  -- running before that age to look now: a batch of the same kind takes about the same time.
  if seen < t.min and age >= t.min then return 0, false end
  -- Every delay is counted from the last poll (`seen`), so that plans made again on a wake
  -- never push the next poll further out. And none is before the shortest duration seen (the
  -- age at which a task of the kind was surely done), but for one task in EXPLORE: the
  -- hazard's window, as wide as the spread, reaches below it (and the learned middles lie
  -- below it, so a task can look overdue before it); with durations alike nearly every poll
  -- placed there saw the task running. The few that still look there find a shorter
  -- duration, if there is one, and wake the rest.
  local function from_seen(at, cap)
    if at < t.min and not opts.explore then at = t.min end
    if at > seen + cap then at = seen + cap end
    if at < seen + MIN_GAP then at = seen + MIN_GAP end
    return at > age and at - age or 0
  end
  if Pace.survival(t, age) < 1 - Q_HIGH then
    local short = OVERDUE_SHARE * t.median
    if short < MIN_GAP then short = MIN_GAP end
    short = short * (opts.factor or 1.5) ^ (opts.overdue or 0)
    if short > max then short = max end
    return from_seen(seen + jitter(short), max), true
  end
  -- Walk the bins from `seen` until the integral of sqrt(h) reaches the spacing.
  local width, x, acc, spacing = t.width, seen, 0, t.spacing
  local b = math.floor(x / width) + 1
  local at
  while true do
    if b > t.edge then
      -- Past what the pace knows: the hazard at its edge carries on, but the front of a batch
      -- still looks at least every FRONT of its age (few finishes say little about the next).
      local he = t.beyond
      at = he > 0 and x + (spacing - acc) / math.sqrt(he) or math.huge
      local front = x * (1 + FRONT)
      if front < at then at = front end
      break
    end
    local r = math.sqrt(t.h[b])
    local stop = b * width
    if r > 0 and acc + r * (stop - x) >= spacing then
      at = x + (spacing - acc) / r
      break
    end
    acc = acc + r * (stop - x)
    x, b = stop, b + 1
    if x - seen > max and (acc > 0 or seen >= t.first or t.n < TRUST) then
      at = x
      break
    end
  end
  -- No gap beyond the schedule's longest, but before the likely range (once enough
  -- durations say where it starts): then one sleep to it.
  local cap = max
  if t.n >= TRUST and seen < t.first then cap = t.first - seen + max end
  if at > age then at = age + jitter(at - age) end
  return from_seen(at, cap), false
end

--- A pace for one client: scheduler gives the clock and the events; random is a function
-- returning a number in [0, 1) (math.random by default).
function Pace.new(scheduler, random)
  local self = setmetatable({ scheduler = scheduler, random = random or math.random,
    kinds = {}, nkinds = 0, estimate = nil }, Pace)
  self:kind(Pace.CLIENT)
  return self
end

--- A gap with +-20% jitter.
function Pace:jitter(gap)
  return gap * (1 + JITTER * (2 * self.random() - 1))
end

--- The state of one kind, made on first use: samples, how many were seen, the waiting tasks'
-- tickets (weak), its event, its table.
function Pace:kind(key)
  local k = self.kinds[key]
  if not k then
    if self.nkinds >= KEYS then
      local oldest, okey
      for name, v in pairs(self.kinds) do
        if name ~= Pace.CLIENT and (not oldest or v.used < oldest.used) then oldest, okey = v, name end
      end
      self.kinds[okey] = nil
      self.nkinds = self.nkinds - 1
    end
    k = { key = key, samples = {}, seen = 0, min = nil, used = 0, ranks = 0, ended = 0,
      tickets = setmetatable({}, { __mode = "k" }), event = self.scheduler:event(),
      table = nil, built = nil, dirty = false }
    self.kinds[key] = k
    self.nkinds = self.nkinds + 1
  end
  k.used = self.scheduler:time()
  return k
end

--- A ticket for a task that starts waiting: its kind (nil: the client-wide one) and the
-- scheduler time it was submitted or attached; `old`, the ticket of an earlier wait on the
-- same task, is taken up again. The wait loop hands it back to every call.
function Pace:ticket(key, started_at, old)
  local k = self:kind(key or Pace.CLIENT)
  local ticket = old or { started = started_at, seen = 0 }
  if ticket.kind ~= k then
    if ticket.kind then ticket.kind.tickets[ticket] = nil end
    -- Its place in the kind's order: scouts are the oldest still waiting (see Scouts).
    k.ranks = k.ranks + 1
    ticket.rank = k.ranks
  end
  ticket.kind = k
  k.tickets[ticket] = true
  k.dirty = true
  return ticket
end

--- The event a task of this ticket sleeps on (fires when its kind learns a shorter duration).
function Pace:event(ticket)
  return ticket.kind.event
end

--- A poll at scheduler time `now` saw the task still running.
function Pace:polled(ticket, now)
  ticket.seen = now - ticket.started
  ticket.kind.dirty = true
end

-- The kind's table, rebuilt when it is stale.
function Pace:_table(k, now)
  local n = #k.samples
  if k.dirty and (not k.built or (k.learned and (n < 8 or n >= 2 * k.built_n))
      or now - k.built >= REBUILD) then
    local alive = {}
    for ticket in pairs(k.tickets) do alive[#alive + 1] = ticket.seen end
    k.table = Pace.build(k.samples, k.seen / (n > 0 and n or 1), alive)
    if k.table then k.table.min = k.min end
    k.built, k.built_n, k.dirty, k.learned = now, n, false, false
  end
  return k.table
end

--- The delay before the next poll of a waiting task at scheduler time `now`: the pace's plan
-- when its kind has learned durations, else `gap` (the schedule's, already jittered). factor:
-- the schedule's growth; overdue: the task's overdue polls so far; max: the longest gap.
-- -> delay, overdue (true when the task is past the likely range).
function Pace:delay(ticket, now, gap, factor, overdue, max)
  local k = ticket.kind
  local t = self:_table(k, now)
  if not t then
    -- Nothing learned yet: a task behind the scouts sleeps the longest gap (see Scouts).
    if max and ticket.rank - k.ended > SCOUTS then
      local long = self:jitter(max)
      if long > gap then return long, false end
      return gap, false
    end
    -- A scout looks more often the more tasks sleep behind it (see Scouts).
    local waiting = k.ranks - k.ended
    if max and waiting > SCOUTS then
      local cap = math.max(MIN_GAP, max * math.sqrt(SCOUTS / waiting))
      -- Drawn from 0.5-1.5 times the cap, not +-20%: the scouts start together, and wide
      -- draws spread their looks over the gap within a few, so one of them looks soon after
      -- any moment (with fixed durations they all finish within the submits' spread).
      if gap > cap then gap = math.max(MIN_GAP, cap * (0.5 + self.random())) end
    end
    return gap, false
  end
  return Pace.plan(t, ticket.seen, now - ticket.started,
    { random = self.random, factor = factor, overdue = overdue, max = max,
      explore = ticket.rank % EXPLORE == 0 })
end

--- True when the task of `ticket` is past its kind's likely range at scheduler time `now`.
function Pace:overdue(ticket, now)
  local t = self:_table(ticket.kind, now)
  return t ~= nil and Pace.survival(t, now - ticket.started) < 1 - Q_HIGH
end

-- Wakes every task of kind k asleep on its event (they plan again).
local function wake(self, k)
  local ev = k.event
  k.event = self.scheduler:event()
  self.scheduler:signal(ev)
end

local function add(self, k, age, done)
  k.seen = k.seen + 1
  if k.seen > SEEN_CAP then k.seen = SEEN_CAP end
  local s = k.samples
  if #s < SAMPLES then
    s[#s + 1] = age
  else
    local j = math.floor(self.random() * k.seen) + 1
    if j <= SAMPLES then s[j] = age end
  end
  k.dirty, k.learned = true, true
  -- Wake the kind's sleepers on its first duration, on one shorter than any before, and each
  -- time what it has learned doubles: plans made on little knowledge are made again.
  local n = k.seen
  if not k.min or done < k.min or (n < SEEN_CAP and n >= 2 and n % 2 == 0 and
      2 ^ math.floor(math.log(n) / math.log(2) + 1e-9) == n) then
    if not k.min or done < k.min then k.min = done end
    wake(self, k)
  end
end

--- The task of `ticket` finished: it stops counting as waiting, and a success of a task this
-- process submitted (`learn`) teaches its kind and the client-wide one its age at `now`.
function Pace:finish(ticket, now, learn)
  local k = ticket.kind
  local waited = k.tickets[ticket]
  if waited then k.ended = k.ended + 1 end
  k.tickets[ticket] = nil
  k.dirty = true
  local age = now - ticket.started
  if not learn or age <= 0 then
    -- Scouts that teach nothing hand over to the next in line (see Scouts).
    if waited and not k.min and k.ended % (SCOUTS / 2) == 0 then wake(self, k) end
    return
  end
  -- It finished between its last poll seen running and this one: the hazard counts the
  -- middle of the two (the end would heap every finish onto the polls that saw them), the
  -- wake the end (the age at which a task of the kind was surely done).
  local mid = ticket.seen > 0 and (ticket.seen + age) / 2 or age
  add(self, k, mid, age)
  local all = self.kinds[Pace.CLIENT]
  if k ~= all then add(self, all, mid, age) end
  -- The client's typical duration (an ETA for the command line): the client-wide median.
  -- (sorted in a table kept for it: a finish allocates nothing here)
  local sorted, samples = self.sorted_scratch, all.samples
  if not sorted then sorted = {}; self.sorted_scratch = sorted end
  for i = 1, #samples do sorted[i] = samples[i] end
  for i = #samples + 1, #sorted do sorted[i] = nil end
  table.sort(sorted)
  self.estimate = quantile(sorted, 0.5)
end

return Pace
