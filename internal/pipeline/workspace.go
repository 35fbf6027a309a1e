package pipeline

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
)

// The API does not say which workspace a key belongs to, and one
// destination may hold the streams of several: each stream keeps a
// fingerprint of the key it was last synced with, and a run with another
// key is refused before any call unless the user says whether the key is a
// new one of the same workspace (KeyRotated) or another workspace's
// (NewStream). Taken for the same workspace silently, another workspace's
// key would report the stream complete, never export its own history and
// mark the other's contacts deleted.

// KeyCheck is how a run's API key compares with the stream's.
type KeyCheck string

// The key checks.
const (
	KeyNew        KeyCheck = "new"          // the stream is new: its first commit records the key
	KeyMatches    KeyCheck = "matches"      // the stream was last synced with this key
	KeyUnrecorded KeyCheck = "not recorded" // an earlier version saved the stream: it takes this run's key
	KeyDiffers    KeyCheck = "differs"      // the stream was synced with another key
)

// KeyMismatchError says the stream a run would continue was synced with
// another API key, which may be another workspace's. No call was made.
type KeyMismatchError struct {
	StreamID, Identity string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the API key is not the one stream %s %s was synced with (the stream keeps a one-way fingerprint of it), so it may be another workspace's; "+
		"if it is a new key of the same workspace, pass --key-rotated; if it is another workspace, pass --new-stream to sync it as a stream of its own "+
		"next to the other (exporting all its history); no call was made", e.StreamID, e.Identity)
}

// chooseStream decides which of the candidate streams the run continues,
// by the key: one last synced with it, else one an earlier version saved
// with no fingerprint, else (the key differs from every one) the first,
// which checkKey then refuses unless o.KeyRotated, or, with o.NewStream, a
// new stream labelled with a workspace of its own. The candidates not
// chosen join pr.others.
func (pr *prepared) chooseStream(cands []candidate, o *Options) error {
	key := o.Client.Key
	pr.key, pr.keyFP = KeyNew, newKeyFingerprint(key)
	best, bestCheck := -1, KeyNew
	rank := map[KeyCheck]int{KeyMatches: 3, KeyUnrecorded: 2, KeyDiffers: 1}
	for i, c := range cands {
		// Of two alike, the first workspace's (no label): a labelled stream
		// was made by a version that kept its key's fingerprint.
		check, fp := c.keyCheck(key)
		if best < 0 || rank[check] > rank[bestCheck] || (rank[check] == rank[bestCheck] && !labelled(c.identity) && labelled(cands[best].identity)) {
			best, bestCheck = i, check
			if check == KeyMatches {
				pr.keyFP = fp
			}
		}
	}
	if best < 0 {
		return nil
	}
	if bestCheck == KeyDiffers && o.NewStream && !o.KeyRotated {
		// Another workspace's stream, next to the first's.
		var id Identity
		if err := json.Unmarshal([]byte(pr.identity), &id); err != nil {
			return err
		}
		var label [4]byte
		_, _ = rand.Read(label[:])
		id.Workspace = hex.EncodeToString(label[:])
		pr.streamID, pr.identity = id.ID()
		for _, c := range cands {
			pr.others = append(pr.others, c.states[0])
		}
		return nil
	}
	if bestCheck == KeyDiffers && o.KeyRotated {
		if best = rotated(cands, o.RotatedStream); best < 0 {
			ids := make([]string, len(cands))
			for i, c := range cands {
				ids[i] = c.id + " " + c.identity
			}
			return &RotatedStreamError{Named: o.RotatedStream, Streams: ids}
		}
	}
	c := cands[best]
	pr.streamID, pr.identity, pr.found, pr.key = c.id, c.identity, true, bestCheck
	for i, other := range cands {
		if i != best {
			pr.others = append(pr.others, other.states[0])
		}
	}
	return nil
}

// labelled says the identity carries a workspace label.
func labelled(identity string) bool {
	var id Identity
	return json.Unmarshal([]byte(identity), &id) == nil && id.Workspace != ""
}

// rotated returns the index of the candidate a rotated key continues: the
// one named, or the only one; -1 when none is named and there are several,
// or the one named is not a candidate.
func rotated(cands []candidate, named string) int {
	if named == "" {
		if len(cands) == 1 {
			return 0
		}
		return -1
	}
	return slices.IndexFunc(cands, func(c candidate) bool { return c.id == named })
}

// RotatedStreamError says which streams a rotated key may continue when the
// run does not name one of them (Options.RotatedStream).
type RotatedStreamError struct {
	Named   string   // the stream the run named, "" none
	Streams []string // the candidates: id and identity
}

func (e *RotatedStreamError) Error() string {
	what := "the destinations hold several streams of these flags, each synced with another key (several workspaces')"
	if e.Named != "" {
		what = fmt.Sprintf("stream %s is not one of these flags synced with another key", e.Named)
	}
	return fmt.Sprintf("--key-rotated: %s: name the stream of this key's workspace, --key-rotated=ID, one of: %s", what, strings.Join(e.Streams, "; "))
}

// keyCheck is how key compares with the fingerprints c keeps in its
// destinations (the worst of them), and the matching fingerprint to keep.
func (c candidate) keyCheck(key extract.APIKey) (KeyCheck, string) {
	check, fp := KeyMatches, ""
	for _, st := range c.states {
		switch {
		case st.KeyFingerprint == "":
			if check == KeyMatches {
				check = KeyUnrecorded
			}
		case MatchesKey(st.KeyFingerprint, key):
			if fp == "" {
				fp = st.KeyFingerprint
			}
		default:
			check = KeyDiffers
		}
	}
	return check, fp
}

// checkKey refuses a run whose key differs from the stream's, unless
// o.KeyRotated, before any call, and says when the stream takes the run's
// key.
func (pr *prepared) checkKey(o *Options, log *slog.Logger) error {
	switch {
	case pr.key == KeyDiffers && !o.KeyRotated:
		return &KeyMismatchError{StreamID: pr.streamID, Identity: pr.identity}
	case pr.key == KeyDiffers:
		log.Info("--key-rotated: the stream continues with the new API key, whose fingerprint it keeps from now on", "stream", pr.streamID)
	case pr.key == KeyUnrecorded:
		log.Info("the stream keeps no fingerprint of its API key (an earlier version saved it): it takes this run's key; a run with another key will be asked whether it is the same workspace",
			"stream", pr.streamID)
	}
	return nil
}

// newKeyFingerprint returns what a stream keeps of the API key k:
// "s1:SALT:MAC", an HMAC-SHA256 of k's fingerprint keyed with a random
// salt, so that a state file holds nothing from which the key could be
// recovered, nor anything that tells two destinations' streams share one.
func newKeyFingerprint(k extract.APIKey) string {
	var salt [8]byte
	_, _ = rand.Read(salt[:])
	return "s1:" + hex.EncodeToString(salt[:]) + ":" + keyMAC(salt[:], k)
}

func keyMAC(salt []byte, k extract.APIKey) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte("leadlex-etl stream key\x00" + k.Fingerprint()))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// MatchesKey reports whether fp, a fingerprint a stream keeps, is the API
// key k's. A fingerprint this version cannot read matches no key.
func MatchesKey(fp string, k extract.APIKey) bool {
	version, rest, ok := strings.Cut(fp, ":")
	salt, mac, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || version != "s1" {
		return false
	}
	s, err := hex.DecodeString(salt)
	if err != nil || len(s) == 0 {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(keyMAC(s, k)))
}

// StreamKey is how key compares with the fingerprint a stream's state keeps.
func StreamKey(st load.StreamState, key extract.APIKey) KeyCheck {
	switch {
	case st.KeyFingerprint == "":
		return KeyUnrecorded
	case MatchesKey(st.KeyFingerprint, key):
		return KeyMatches
	}
	return KeyDiffers
}
