/**
 * `umirror VERB --help` for the dmsetup-style verbs (docs/cli.md has the same with examples).
 */
export const DM_VERBS = ['create', 'load', 'clear', 'suspend', 'resume', 'remove', 'status', 'table', 'info', 'deps', 'ls', 'wait', 'message', 'scrub'] as const;
export type DmVerb = (typeof DM_VERBS)[number];

const socketLine = '  --socket PATH   the daemon\'s control socket (default $UMIRROR_SOCKET, else a per-user runtime path)';

export const dmVerbHelp: Record<DmVerb, string> = {
  create: `Usage: umirror create NAME [--table TABLE | TABLE_FILE] [--nbd HOST:PORT|unix:PATH] [--readonly] [--lazy-clean MS]
                      [--read-repair] [--socket PATH]
                      [--tls off|on|require] [--tls-psk FILE | --tls-certificates DIR [--tls-verify-peer]]
                      [--max-connections N] [--socket-mode MODE] [--socket-group GROUP]

Creates device NAME in the daemon, loads TABLE and resumes it (dmsetup create). Without --table the
table is read from TABLE_FILE, else from stdin. TABLE is kernel syntax, one target per line (mirror, linear, zero, error);
a device may be a path or the name of another device in the same daemon (stacking).
  --nbd ADDR      serve NAME over NBD on ADDR (export name NAME; the only export there, so the
                  default export name works too); prints the NBD URI. With a daemon started
                  with --nbd, NAME is also an export of that shared listener (its URI is printed
                  when there is no --nbd)
  --readonly      NBD clients may only read (qemu-nbd -r): writes, trims and zeroes fail with EPERM
  --lazy-clean MS a disk log clears a region only after it stayed idle MS milliseconds (default: the
                  daemon's --lazy-clean, 1000; 0 clears at the next pass, as the kernel)
  --read-repair   a read of an in-sync region that fails on a leg is served by another leg and the
                  data written back; the leg stays A if that write succeeds (md's behaviour; off by
                  default, as the kernel's mirror, which fails the leg: R)
  NBD security (as umirror serve; docs/security.md): --tls off|on|require (default: require with a
  key, else off), --tls-psk FILE (mode 600), --tls-certificates DIR, --tls-verify-peer,
  --max-connections N (1..64, default 16), and for a unix: socket --socket-mode MODE (default 0600)
  and --socket-group GROUP. Key files are read by the daemon when the device is created.
${socketLine}`,
  load: `Usage: umirror load NAME [--table TABLE | TABLE_FILE] [--socket PATH]

Loads TABLE as NAME's inactive table (dmsetup load); the next resume swaps it in. Without --table the
table is read from TABLE_FILE, else from stdin.
${socketLine}`,
  clear: `Usage: umirror clear NAME [--socket PATH]

Drops NAME's inactive table (dmsetup clear).
${socketLine}`,
  suspend: `Usage: umirror suspend [--noflush] NAME [--socket PATH]

Suspends NAME (dmsetup suspend): new I/O is held, I/O in flight drains, mirror recovery stops and the
dirty log is flushed. Writes a mirror holds after a leg failure (handle_errors) fail with EIO, unless
--noflush: then they are requeued and complete against the table live after the next resume.
${socketLine}`,
  resume: `Usage: umirror resume NAME [--socket PATH]

Resumes NAME (dmsetup resume), swapping in the inactive table if one was loaded; held I/O is issued.
${socketLine}`,
  remove: `Usage: umirror remove [-f|--force] NAME... [--socket PATH]

Removes each NAME (dmsetup remove): a flushing suspend, then the device is destroyed. Refused (Device
or resource busy) while another device stacks on NAME or NBD clients are connected. Several names are
removed in turn; the exit status is 1 when any failed.
  -f, --force     first replace the table with an error target of the same size (suspend --noflush,
                  load, resume), so held and new I/O fails, then remove (dmsetup remove --force)
${socketLine}`,
  status: `Usage: umirror status [--inactive] [--json] [--watch] [NAME] [--socket PATH]

Prints "<start> <len> <target> <status>" per segment, as dmsetup status. Without NAME: every device,
each line prefixed by "NAME: ".
  --inactive      the inactive table's targets
  --json          the same facts as JSON (segments, and per mirror its regions in sync)
  --watch         print the status again whenever it changes, with a resync progress bar (Ctrl-C ends);
                  without NAME, every device
${socketLine}`,
  table: `Usage: umirror table [--inactive] [--json] [NAME] [--socket PATH]

Prints the table as dmsetup table does. Without NAME: every device, each line prefixed by "NAME: ".
  --inactive      the inactive table
  --json          as JSON
${socketLine}`,
  info: `Usage: umirror info [--json] [NAME] [--socket PATH]

Prints Name:, State:, Tables present:, Open count:, Event number: and Number of targets: lines (and
NBD URI: when served), as dmsetup info. Without NAME: every device.
${socketLine}`,
  deps: `Usage: umirror deps [NAME] [--socket PATH]

Prints the devices NAME's live table holds open (dmsetup deps -o devname): "N dependencies\t: (DEV) ...",
newest first as the kernel lists them; a DEV is a path or another device of the daemon. Without NAME:
every device, each line prefixed by "NAME: ".
${socketLine}`,
  ls: `Usage: umirror ls [--json] [--tree] [--socket PATH]

Lists the daemon's devices ("No devices found" when there are none).
  --tree          every device with the devices it stacks on below it, as dmsetup ls --tree draws
                  it (paths as leaves in parentheses)
${socketLine}`,
  wait: `Usage: umirror wait [-v] [--json] NAME [EVENT_NR] [--socket PATH]
       umirror wait --progress [--json] NAME [--socket PATH]

Blocks until NAME's event counter exceeds EVENT_NR (default 0), as dmsetup wait. Events: a leg
failure (first of each kind, with handle_errors), a log failure, a completed resync.
  -v, --verbose   then print info
  --json          then print {"eventNr":N}
  --progress      instead, show a resync progress bar (stderr) until every mirror segment is in sync;
                  exits 1 when a failed leg keeps regions out of sync (they wait for a new table)
${socketLine}`,
  message: `Usage: umirror message NAME SECTOR MESSAGE... [--socket PATH]

Sends a message to the target at SECTOR (dmsetup message). As the kernel's mirror target, umirror's
targets take no messages ("Target type does not support messages"); dm core's @cancel_deferred_remove
and @stats_list are accepted and do nothing.
${socketLine}`,
  scrub: `Usage: umirror scrub NAME [--repair] [--rate MiB/s] [--json] [--socket PATH]

Compares NAME's legs online (md's check, DRBD's verify): every in-sync region is read once from every
valid leg while clients go on using the device; a region being compared is held against writes (a
write waits at most for one region's reads). Prints a progress line on stderr while it runs, then
  scrub NAME: 3 of 2048 regions differ (regions 17, 18, 1033)
and a line per differing region naming the outvoted leg. Ctrl-C stops it after the region in hand.
  --repair        rewrite differing regions: from the default leg with two legs, from the majority
                  with three or more; a tie, or a region where every leg differs, is reported and
                  left alone
  --rate MiB/s    compare at most this much of the device per second (default: the resync's pace,
                  full speed while clients are idle, the busy rate while they are busy)
  --json          print the result as JSON (every differing region, per mirror segment)
Exit status 0 when the legs agree (nothing differed, or all of it was repaired), else 1.
${socketLine}`,
};
