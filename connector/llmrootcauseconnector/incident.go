package llmrootcauseconnector

// recentVerdicts are a replica's last verdicts, to tell an incident from the odd slow request: a healthy
// replica has next to no slow requests (issue 16's bar is 1%), an incident many. Only in an incident are the
// requests beside a slow one (behind its queue, in its batch) no example of the healthy pace; outside one,
// a slow request now and then must not stop the baselines from learning, or a busy replica with a steady
// trickle of slow requests would never learn, and a model still on its fallback limits would stay there.
type recentVerdicts struct {
	slow        [recentVerdictsKept]bool
	n, next     int
	slowInStore int
}

const (
	recentVerdictsKept = 64
	// incidentMinVerdicts and incidentSlowShare: a replica is in an incident while at least this share of
	// its last verdicts (and at least this many of them) were slow: ten times a healthy replica's bar.
	incidentMinVerdicts = 16
	incidentSlowShare   = 0.1
)

func (v *recentVerdicts) add(slow bool) {
	if v.n == recentVerdictsKept {
		if v.slow[v.next] {
			v.slowInStore--
		}
	} else {
		v.n++
	}
	v.slow[v.next] = slow
	if slow {
		v.slowInStore++
	}
	v.next = (v.next + 1) % recentVerdictsKept
}

func (v *recentVerdicts) inIncident() bool {
	return v.n >= incidentMinVerdicts && float64(v.slowInStore) >= incidentSlowShare*float64(v.n)
}
