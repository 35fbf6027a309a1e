package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/leadlex/leadlex-etl/internal/archive"
	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/parquetio"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// replayOptions holds the flags of `leadlex-etl replay`.
type replayOptions struct {
	RawDir          string
	Stream          string
	DuckDB          string
	Parquet         string
	PartitionBy     load.Partitioning
	ParquetCompress parquetio.Compression
	ParquetTarget   load.ByteSize
	ParquetRowGroup int
	MemoryLimit     string
	Threads         int
	GroupRows       int64
	Log             logOptions
}

// AddFlags registers the replay flags.
func (o *replayOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.RawDir, "raw-dir", "", "the raw archive a sync --raw-dir kept (required)")
	fs.StringVar(&o.Stream, "stream", "", "the stream to replay, when the raw archive holds several (its folder name; the error lists them)")
	fs.StringVar(&o.DuckDB, "duckdb", "", "DuckDB file to rebuild (a new file, or one that does not hold the stream)")
	fs.StringVar(&o.Parquet, "parquet", "", "folder of Hive-partitioned Parquet files to rebuild (a new or empty folder, or a lake that does not hold the stream)")
	fs.Var(&o.PartitionBy, "partition-by", "Parquet partitions of created_at (UTC): month, day or year (default: the lake's own; month for a new lake)")
	o.ParquetCompress = parquetio.DefaultCompression
	fs.Var(&o.ParquetCompress, "parquet-compression", "Parquet compression")
	o.ParquetTarget = load.DefaultTargetFileBytes
	fs.Var(&o.ParquetTarget, "parquet-target-size", "size a Parquet file grows to before another is started (at least 1MB)")
	fs.IntVar(&o.ParquetRowGroup, "parquet-row-group-rows", parquetio.DefaultRowGroupRows, "rows per Parquet row group")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "2GB", "DuckDB memory_limit")
	fs.IntVar(&o.Threads, "threads", 0, "DuckDB threads (default: number of CPUs)")
	fs.Int64Var(&o.GroupRows, "group-rows", pipeline.DefaultReplayGroupRows,
		"rows committed to DuckDB at once, held in memory until then; 0 commits window by window, in less memory and more time")
	o.Log.AddFlags(fs)
}

func (o *replayOptions) validate() error {
	switch {
	case o.RawDir == "":
		return usagef("no raw archive: give --raw-dir DIR (what sync --raw-dir kept)")
	case o.DuckDB == "" && o.Parquet == "":
		return usagef("no destination: give --duckdb PATH, --parquet DIR, or both")
	case o.ParquetTarget < load.MinTargetFileBytes:
		return usagef("--parquet-target-size %s is below %s", o.ParquetTarget, load.MinTargetFileBytes)
	case o.ParquetRowGroup < 1000:
		return usagef("--parquet-row-group-rows %d must be at least 1000", o.ParquetRowGroup)
	case o.GroupRows < 0:
		return usagef("--group-rows %d must be 0 (window by window) or more", o.GroupRows)
	}
	return o.Log.validate()
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o replayOptions
	fs := newFlagSet("replay", `Rebuild a DuckDB file and/or a Parquet lake from the raw archive that
sync --raw-dir kept, with no API call: after a lost warehouse, for a new
partitioning, or to add the lake later. The archived response bodies of one
stream are loaded in the order they were committed, through the same
transform and the same state rules as the sync, and each window is committed
with its original request id and commit time: the contacts equal the
original destination's, _request_id, _loaded_at and _deleted_at included,
and so does the stream's coverage, so the next sync goes on from there.
Into DuckDB the windows commit in groups of --group-rows rows (about a
million), one INSERT and one transaction each, which holds them in memory
until then: a replay of a million contacts peaks at about 800MB, against
400MB window by window (--group-rows 0), which takes half again as long.

A corrupted, truncated or altered file stops the replay, naming it; a
destination the replay created is then removed, so it can be run again once
the file is restored or moved away. A replay stopped by a signal (or killed)
keeps the windows it committed, and the same replay run again resumes after
them. A destination that holds the stream otherwise (it was synced) is
refused: a replay rebuilds, it does not merge.

Example:
  leadlex-etl replay --raw-dir raw --duckdb rebuilt.duckdb --parquet lake`, stdout)
	o.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	log := o.Log.logger(stderr)
	arch, err := archive.Open(o.RawDir, false)
	if err != nil {
		return usageError{fmt.Errorf("--raw-dir: %w", err)}
	}
	defer arch.Close()
	targets, dests, err := openTargets(ctx, o.DuckDB, load.DuckDBOptions{MemoryLimit: o.MemoryLimit, Threads: o.Threads, Logger: log},
		o.Parquet, load.LakeOptions{PartitionBy: o.PartitionBy, TargetFileBytes: o.ParquetTarget,
			Parquet: parquetio.Options{Compression: o.ParquetCompress, RowGroupRows: o.ParquetRowGroup}})
	defer func() {
		for _, t := range targets {
			_ = t.Close()
		}
	}()
	if err != nil {
		return err
	}
	group := o.GroupRows
	if group == 0 {
		group = -1 // window by window
	}
	res, err := pipeline.Replay(ctx, pipeline.ReplayOptions{Archive: arch, StreamID: o.Stream, Targets: targets, Logger: log, GroupRows: group})
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.path
	}
	dest := strings.Join(names, " and ")
	if err != nil {
		for _, t := range targets {
			_ = t.Close()
		}
		targets = nil
		return replayFailed(ctx, stdout, err, res, dests, dest)
	}
	if res.Windows == 0 {
		fmt.Fprintf(stdout, "replay %s: nothing to do: all %d archived windows of stream %s are there already\n", dest, res.Resumed, res.StreamID)
		return nil
	}
	fmt.Fprintf(stdout, "replay %s: %s of stream %s from %s, no API call: %d rows received, %d rejected, in %s\n",
		dest, plural(res.Windows, "window"), res.StreamID, o.RawDir, res.Rows, res.Rejects, res.Elapsed.Round(time.Millisecond))
	if res.Resumed > 0 {
		fmt.Fprintf(stdout, "resumed: the first %s were already there (an interrupted replay committed them)\n", plural(res.Resumed, "window"))
	}
	if res.UnappliedDeletes > 0 {
		fmt.Fprintf(stdout, "deletions: the archived deletions of %s were not applied: a destination holds other streams this stream's exports cannot judge, and a sync of it there would not apply them either\n",
			plural(res.UnappliedDeletes, "window"))
	}
	c := res.Changes
	fmt.Fprintf(stdout, "contacts: %d new, %d written again, %d deleted\n", c.Inserted, c.Replaced, c.Deleted)
	if from, to := res.Coverage.Span(); len(res.Coverage) > 0 {
		fmt.Fprintf(stdout, "coverage: %s in %s, as the archived runs left it; the next sync goes on from there\n",
			rangeText(extract.Window{From: from, To: to}), plural(len(res.Coverage), "segment"))
	}
	if len(res.Pending) > 0 {
		fmt.Fprintf(stdout, "pending: %s the last archived run had left; the next sync resumes them\n", plural(len(res.Pending), "window"))
	}
	return nil
}

// replayFailed says what a failed replay left and what to do, and returns
// err as the exit code wants it. An interrupted replay keeps what it
// committed, to resume; a replay that failed otherwise removes the
// destinations it created (so that a replay once the cause is fixed starts
// afresh), and keeps what it committed to the others, which the same
// replay resumes.
func replayFailed(ctx context.Context, stdout io.Writer, err error, res pipeline.ReplayResult, dests []destination, dest string) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		fmt.Fprintf(stdout, "replay %s: interrupted after %s; what it committed is kept: run the same replay again to resume\n", dest, plural(res.Windows, "window"))
		return err
	}
	defer removeCreated(stdout, res, dests, dest)
	var held *pipeline.StreamHeldError
	if errors.As(err, &held) && held.Target < len(dests) {
		return fmt.Errorf("replay into %s refused: %w", dests[held.Target].path, err)
	}
	var choice *pipeline.StreamChoiceError
	if errors.As(err, &choice) && len(choice.Streams) > 0 {
		return usageError{fmt.Errorf("%w with --stream ID", err)}
	}
	return err
}

// removeCreated removes the destinations a failed replay created, and says
// what became of them and of the others.
func removeCreated(stdout io.Writer, res pipeline.ReplayResult, dests []destination, dest string) {
	var removed, kept []string
	for _, d := range dests {
		if d.created {
			d.remove()
			removed = append(removed, d.path)
		} else {
			kept = append(kept, d.path)
		}
	}
	if len(removed) > 0 {
		fmt.Fprintf(stdout, "replay %s: failed after %s; %s, which the replay created, was removed\n", dest, plural(res.Windows, "window"), strings.Join(removed, " and "))
	}
	if len(kept) > 0 && res.Windows > 0 {
		fmt.Fprintf(stdout, "replay %s: failed after %s, which stay committed in %s; once the cause below is fixed, the same replay resumes after them\n",
			dest, plural(res.Windows, "window"), strings.Join(kept, " and "))
	}
}
