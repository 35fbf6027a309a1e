package extract

import (
	"log/slog"
	"net/http"
	"time"
)

// MaxClockSkew is the largest difference between the API's clock, as its
// Date header tells it, and this machine's that is believed. A Date
// further off (a cached answer, a broken gateway) is ignored, and the
// API's instants are read in this machine's time as they are.
const MaxClockSkew = 24 * time.Hour

// clockSkewTolerance is how far the Date header may differ from this
// machine's clock with the two taken to agree: Date counts whole seconds,
// and the answer took a while to arrive.
const clockSkewTolerance = 2 * time.Second

// serverSkew returns how far the API's clock runs ahead of this machine's
// (negative: behind), from the answer's Date header and now, when it
// arrived: 0 when the header is missing, unparsable, implausible (more than
// MaxClockSkew off) or within clockSkewTolerance. The instants the API
// sends of its own clock (an epoch X-RateLimit-Reset, a Retry-After date)
// are moved back by it into this machine's time, so that a run neither
// refuses to call after the real reset (the API's clock ahead) nor calls
// before it (behind). The log says once per Client what it found.
func (c *Client) serverSkew(h http.Header, now time.Time, log *slog.Logger) time.Duration {
	s := h.Get("Date")
	if s == "" {
		return 0
	}
	date, err := http.ParseTime(s)
	if err != nil {
		return 0
	}
	skew := date.Sub(now)
	if skew.Abs() <= clockSkewTolerance {
		return 0
	}
	c.mu.Lock()
	warned := c.skewWarned
	c.skewWarned = true
	c.mu.Unlock()
	if skew.Abs() > MaxClockSkew {
		if !warned {
			log.Warn("the API's Date header is too far from this machine's clock to be believed: its rate-limit reset times are read as they are (said once)",
				"date", date.UTC().Format(time.RFC3339), "difference", roundDuration(skew.Abs()), "max", shortDuration(MaxClockSkew))
		}
		return 0
	}
	if !warned {
		ahead := "ahead of"
		if skew < 0 {
			ahead = "behind"
		}
		log.Warn("the API's clock differs from this machine's (its Date header): its rate-limit reset times are read in this machine's time (said once)",
			"api_clock", ahead+" this machine's", "by", roundDuration(skew.Abs()))
	}
	return skew
}
