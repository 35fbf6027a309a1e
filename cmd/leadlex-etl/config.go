package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// A config file (leadlex.toml) holds flag values: its top-level keys apply
// to every stream, and each [streams.NAME] table is one stream, whose keys
// override the top level's. Keys are the flags' long names (base-url,
// duckdb, tag, max-calls; base_url is read as base-url). A flag given on
// the command line overrides both. Secrets are named, never written: the
// key comes from the environment variable api-key-env names or the file
// api-key-file names. Relative paths in the file are relative to the file.
//
//	base-url    = "https://data.leadlex.com/functions/v1/api-gateway"
//	api-key-env = "LEADLEX_API_KEY"
//	duckdb      = "warehouse.duckdb"
//
//	[streams.vip]
//	tag = ["vip"]
//
//	[streams.newsletter]
//	list-id = "lst_123"
//	parquet = "newsletter-lake"

// configOptions are --config and --stream.
type configOptions struct {
	Path    string
	Streams []string
}

func (o *configOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Path, "config", "", "read flag values, and streams, from this TOML file; flags on the command line override it")
	fs.StringSliceVar(&o.Streams, "stream", nil, "with --config: only these of the file's [streams.NAME] (comma-separated or repeated; default all, in file order)")
}

// configKeysNotAllowed are flags a config file cannot set, and why.
var configKeysNotAllowed = map[string]string{
	"api-key": "secrets are not written in the config file; name the environment variable that holds the key (api-key-env) or the file (api-key-file)",
	"config":  "a config file cannot name another",
	"stream":  "streams are [streams.NAME] tables",
	"help":    "not a setting",
	"json":    "the output format belongs on the command line",
}

// configGroups are flags that set one thing: a command line that gives
// one of them overrides every one of them in the file, and a stream's table
// that gives one overrides the file's top level for all of them.
var configGroups = [][]string{{"wait", "no-wait"}, {"api-key-file", "api-key-env"}}

func configGroup(key string) []string {
	for _, g := range configGroups {
		if slices.Contains(g, key) {
			return g
		}
	}
	return []string{key}
}

// looksLikeAKey says s could be an API key: what the file must never hold.
func looksLikeAKey(s string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "wbk_")
}

// streamNamePattern is what a stream's name may be: it shows in paths
// ({stream} in --summary-json), logs and --stream lists.
var streamNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// configPathKeys hold paths, which are relative to the config file.
var configPathKeys = map[string]bool{"duckdb": true, "parquet": true, "api-key-file": true, "summary-json": true, "raw-dir": true}

// configKnownKeys are the flags of the commands that read a config file:
// a key that is none of them is a mistake.
func configKnownKeys() map[string]bool {
	known := map[string]bool{}
	for _, fs := range []*pflag.FlagSet{newSyncFlagSet(new(syncOptions), io.Discard), newStatusFlagSet(new(statusOptions), io.Discard)} {
		fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
	}
	return known
}

// configValue is one key's value and where it was written.
type configValue struct {
	val   any
	where string // "leadlex.toml" or "leadlex.toml [streams.vip]"
}

// configFile is a parsed config file.
type configFile struct {
	path    string
	top     map[string]configValue
	streams []configStream // in file order
}

// configStream is one [streams.NAME] table.
type configStream struct {
	name   string
	values map[string]configValue
}

// loadConfig reads and checks a config file.
func loadConfig(path string) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	var raw map[string]any
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, usagef("--config %s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, usagef("--config %s: %v", path, err)
	}
	dir := filepath.Dir(path)
	known := configKnownKeys()
	c := &configFile{path: path, top: map[string]configValue{}}
	read := func(table map[string]any, where string, into map[string]configValue) error {
		keys := make([]string, 0, len(table))
		for k := range table {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		spelled := map[string]string{}
		for _, k := range keys {
			v := table[k]
			key := strings.ReplaceAll(k, "_", "-")
			if why, ok := configKeysNotAllowed[key]; ok {
				return usagef("--config %s: %s: key %q: %s", path, where, k, why)
			}
			if !known[key] {
				return usagef("--config %s: %s: unknown key %q (keys are the long names of sync's and status's flags, such as base-url, duckdb, tag)", path, where, k)
			}
			if other, dup := spelled[key]; dup {
				return usagef("--config %s: %s: %q and %q are the same key", path, where, other, k)
			}
			spelled[key] = k
			if holdsAKey(v) {
				return usagef("--config %s: %s: %q holds what looks like an API key (wbk_...): the file names where the key is (api-key-env, api-key-file), it never holds it", path, where, k)
			}
			if s, ok := v.(string); ok && configPathKeys[key] && s != "" && !filepath.IsAbs(s) {
				v = filepath.Join(dir, s)
			}
			if b, ok := v.(bool); ok && key == "wait" {
				// wait = false means no-wait = true: one setting, two flags.
				key, v = "no-wait", !b
			}
			if _, dup := into[key]; dup {
				return usagef("--config %s: %s: wait and no-wait are the same setting: give one", path, where)
			}
			into[key] = configValue{val: v, where: where}
		}
		return nil
	}
	streams, _ := raw["streams"]
	delete(raw, "streams")
	if err := read(raw, filepath.Base(path), c.top); err != nil {
		return nil, err
	}
	if streams != nil {
		tables, ok := streams.(map[string]any)
		if !ok {
			return nil, usagef("--config %s: streams must be tables, [streams.NAME]", path)
		}
		// The file's order, which a map does not keep: a stream is known
		// by its first key, whether [streams.NAME] or a dotted key.
		seen := map[string]bool{}
		for _, k := range md.Keys() {
			if len(k) >= 2 && k[0] == "streams" && !seen[k[1]] {
				seen[k[1]] = true
				c.streams = append(c.streams, configStream{name: k[1]})
			}
		}
		var unseen []string // none expected; never drop a stream
		for name := range tables {
			if !seen[name] {
				unseen = append(unseen, name)
			}
		}
		sort.Strings(unseen)
		for _, name := range unseen {
			c.streams = append(c.streams, configStream{name: name})
		}
		for i := range c.streams {
			st := &c.streams[i]
			table, ok := tables[st.name].(map[string]any)
			if !ok {
				return nil, usagef("--config %s: streams.%s must be a table, [streams.%s]", path, st.name, st.name)
			}
			if !streamNamePattern.MatchString(st.name) {
				return nil, usagef("--config %s: stream name %q: use letters, digits, - and _ (at most 64, starting with a letter or digit)", path, st.name)
			}
			st.values = map[string]configValue{}
			if err := read(table, fmt.Sprintf("%s [streams.%s]", filepath.Base(path), st.name), st.values); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// holdsAKey says a value, or an item of a list value, looks like a key.
func holdsAKey(v any) bool {
	switch x := v.(type) {
	case string:
		return looksLikeAKey(x)
	case []any:
		return slices.ContainsFunc(x, holdsAKey)
	case map[string]any:
		for _, y := range x {
			if holdsAKey(y) {
				return true
			}
		}
	}
	return false
}

// selectStreams returns the streams --stream names, all when it names none.
// A file with no [streams.NAME] is one unnamed stream.
func (c *configFile) selectStreams(names []string) ([]configStream, error) {
	if len(c.streams) == 0 {
		if len(names) > 0 {
			return nil, usagef("--stream %s: %s has no [streams.NAME] tables", strings.Join(names, ","), c.path)
		}
		return []configStream{{}}, nil
	}
	if len(names) == 0 {
		return c.streams, nil
	}
	var out []configStream
	picked := map[string]bool{}
	for _, n := range names {
		if picked[n] {
			continue
		}
		picked[n] = true
		i := c.stream(n)
		if i < 0 {
			have := make([]string, len(c.streams))
			for j, s := range c.streams {
				have[j] = s.name
			}
			return nil, usagef("--stream %q: %s has no such stream (it has %s)", n, c.path, strings.Join(have, ", "))
		}
		out = append(out, c.streams[i])
	}
	return out, nil
}

func (c *configFile) stream(name string) int {
	for i, s := range c.streams {
		if s.name == name {
			return i
		}
	}
	return -1
}

// apply sets the flags of fs that the command line left alone from the
// stream's values and the file's top level. Keys fs does not have (a sync
// flag read by status) are left out.
func (c *configFile) apply(fs *pflag.FlagSet, st configStream) error {
	merged := map[string]configValue{}
	for k, v := range c.top {
		merged[k] = v
	}
	for k := range st.values {
		for _, g := range configGroup(k) {
			delete(merged, g) // the stream's own choice of the setting
		}
	}
	for k, v := range st.values {
		merged[k] = v
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || slices.ContainsFunc(configGroup(k), fs.Changed) {
			continue // not this command's, or the command line's to set
		}
		if err := setFlag(fs, f, merged[k].val); err != nil {
			return usagef("--config %s: %s: %s: %v", c.path, merged[k].where, k, err)
		}
	}
	return nil
}

// setFlag sets f from a TOML value as if it were given on the command line.
func setFlag(fs *pflag.FlagSet, f *pflag.Flag, v any) error {
	if list, ok := v.([]any); ok {
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("takes one value, not a list")
		}
		items := make([]string, len(list))
		for i, x := range list {
			s, err := tomlScalar(x)
			if err != nil {
				return err
			}
			items[i] = s
		}
		if err := sv.Replace(items); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	s, err := tomlScalar(v)
	if err != nil {
		return err
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok && f.Value.Type() == "stringArray" {
		// One value for a repeatable flag (tag) is a list of one: a tag
		// may hold a comma. A comma-separated flag (fields) splits it, as
		// on the command line.
		if err := sv.Replace([]string{s}); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	return fs.Set(f.Name, s)
}

// tomlScalar renders a TOML value as a flag's text.
func tomlScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10), nil // 1e6 is a whole number
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case time.Time:
		switch x.Location().String() {
		case "date-local":
			return x.Format("2006-01-02"), nil
		case "datetime-local":
			return x.Format("2006-01-02T15:04:05.999999999"), nil
		case "time-local":
			return "", fmt.Errorf("a time of day without a date is not an instant")
		}
		return x.Format(time.RFC3339Nano), nil
	case map[string]any:
		return "", fmt.Errorf("a table where a value belongs")
	}
	return "", fmt.Errorf("a value of type %T is not understood", v)
}

// configRun is one run of a command: a stream of the config file, or the
// command line alone.
type configRun struct {
	name  string // the stream's name in the file; "" without one
	file  *configFile
	entry configStream
}

// apply sets what the command line left alone from the config file.
func (r configRun) apply(fs *pflag.FlagSet) error {
	if r.file == nil {
		return nil
	}
	return r.file.apply(fs, r.entry)
}

// configRuns parses args with a flag set of the command (from newFS) to
// find --config and --stream, and returns a run per selected stream: one
// run with nothing to apply when there is no config file.
func configRuns(args []string, newFS func() (*pflag.FlagSet, *configOptions)) ([]configRun, error) {
	fs, co := newFS()
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	// An empty name (--stream "$S" with S unset) would select every stream.
	if fs.Changed("stream") && (len(co.Streams) == 0 || slices.ContainsFunc(co.Streams, func(n string) bool { return strings.TrimSpace(n) == "" })) {
		return nil, usagef("--stream %q: a stream's name is empty; leave --stream out to run every stream", strings.Join(co.Streams, ","))
	}
	if co.Path == "" {
		if len(co.Streams) > 0 {
			return nil, usagef("--stream names streams of a config file: give --config too")
		}
		return []configRun{{}}, nil
	}
	c, err := loadConfig(co.Path)
	if err != nil {
		return nil, err
	}
	sel, err := c.selectStreams(co.Streams)
	if err != nil {
		return nil, err
	}
	runs := make([]configRun, len(sel))
	for i, st := range sel {
		runs[i] = configRun{name: st.name, file: c, entry: st}
	}
	return runs, nil
}
