// `ballast lab`: the real-VM lab from the command line, so anyone can try ballast against real
// QEMU guests: build the guest image, bring guests up under libvirtd, look at them, tear down.
import type { Command } from 'commander';
import {
  ensureLabBuilt,
  currentBuild,
  ensureLibvirtd,
  stopLibvirtd,
  labLibvirtdPid,
  libvirtdAnswers,
  libvirtdIdle,
  startLabGuests,
  stopLabGuests,
  listLabGuests,
  labGuestSummary,
  listQemuGuests,
  stopAllQemuGuests,
  labAvailable,
  DEFAULT_MEM_MIB,
  DEFAULT_WORKLOAD,
  LIBVIRT_URI,
} from '../lab/index.js';
import { consolePathOf } from '../lab/guests.js';

function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
}

async function requireLab(libvirt = true): Promise<void> {
  const a = await labAvailable({ libvirt });
  if (!a.ok) throw new Error(`the lab cannot run here: ${a.reason}`);
}

const fmtKiB = (k: number) => `${Math.round(k / 1024)} MiB`;

async function statusReport() {
  const build = currentBuild();
  const answers = await libvirtdAnswers();
  const ourPid = labLibvirtdPid();
  const guests = answers ? await listLabGuests() : [];
  const qemu = listQemuGuests();
  return {
    build: build
      ? {
          kernelRelease: build.kernelRelease,
          hash: build.hash.slice(0, 12),
          builtAt: build.builtAt,
          initrdBytes: build.initrdBytes,
          guestAgent: build.guestAgent,
        }
      : null,
    libvirtd: { answers, pid: ourPid, startedByLab: ourPid !== null },
    guests: guests.map((g) => {
      const s = labGuestSummary(consolePathOf(g.name));
      return {
        name: g.name,
        state: g.state,
        kind: 'libvirt',
        console: consolePathOf(g.name),
        meminfo: s.meminfo.at(-1) ?? null,
        rate: s.rates.at(-1) ?? null,
        balloonBound: s.balloonBound,
      };
    }),
    qemuGuests: qemu.map((g) => {
      const s = labGuestSummary(g.consoleLog);
      return {
        name: g.name,
        pid: g.pid,
        running: g.running,
        kind: 'qemu',
        qmpSocket: g.qmpSocket,
        console: g.consoleLog,
        meminfo: s.meminfo.at(-1) ?? null,
        rate: s.rates.at(-1) ?? null,
        balloonBound: s.balloonBound,
      };
    }),
  };
}

export function register(program: Command): void {
  const lab = program.command('lab').description('real-VM lab: QEMU guests (TCG) under libvirtd or with QMP, built from Debian packages');

  lab
    .command('build')
    .description('build (or reuse) the guest kernel + initramfs under lab/build')
    .option('--force', 'rebuild even if the inputs did not change')
    .action(async (o: { force?: boolean }) => {
      const b = await ensureLabBuilt({ force: o.force });
      const m = b.manifest;
      process.stdout.write(
        `${b.rebuilt ? 'built' : 'up to date'} in ${b.ms} ms: kernel ${m.kernelRelease}, initramfs ${(m.initrdBytes / 1048576).toFixed(1)} MiB, ` +
          `modules ${m.modules.map((x) => `${x.name}(${x.kind})`).join(' ')}, guest agent ${m.guestAgent ? 'included' : `left out (${m.guestAgentSkipped})`}\n` +
          `  ${m.kernel}\n  ${m.initrd}\n`,
      );
    });

  lab
    .command('up')
    .description('start lab guests ballast-lab-1..N under libvirtd (starting libvirtd if needed)')
    .option('--guests <n>', 'number of guests (1-8)', intOption('guests', 1, 8), 2)
    .option('--mem <MiB>', 'memory per guest (128-512)', intOption('mem', 128, 512), DEFAULT_MEM_MIB)
    .option('--workload <spec>', `workload schedule (idle:S, alloc:MiB, touch:S, free, loop)`, DEFAULT_WORKLOAD)
    .option('--stagger <s>', 'seconds between the workload starts of consecutive guests', intOption('stagger', 0, 3600), 0)
    .option('--stats-period <s>', 'balloon stats period', intOption('stats-period', 1, 3600), 2)
    .action(async (o: { guests: number; mem: number; workload: string; stagger: number; statsPeriod: number }) => {
      await requireLab();
      const d = await ensureLibvirtd();
      process.stderr.write(`lab: libvirtd PID ${d.pid ?? '?'} (${d.startedByUs ? 'started by the lab' : "not the lab's"})\n`);
      const t0 = Date.now();
      const guests = await startLabGuests({ count: o.guests, memMiB: o.mem, workload: o.workload, staggerS: o.stagger, statsPeriodS: o.statsPeriod });
      process.stdout.write(`${guests.length} guest(s) up in ${Date.now() - t0} ms (${LIBVIRT_URI}):\n`);
      for (const g of guests) process.stdout.write(`  ${g.name}  ${g.memMiB} MiB  ready after ${g.bootMs} ms  console ${g.consolePath}\n`);
      process.stdout.write(`stop them with: ballast lab down\n`);
    });

  lab
    .command('down')
    .description('stop the guests `lab up` started (--all: every ballast-lab-* guest, QEMU ones too) and the libvirtd the lab started')
    .option('--all', 'also stop guests of test sessions (ballast-lab-<group>-N) and plain QEMU lab guests')
    .option('--keep-libvirtd', 'leave libvirtd running')
    .action(async (o: { all?: boolean; keepLibvirtd?: boolean }) => {
      const answers = await libvirtdAnswers();
      let stopped: string[] = [];
      if (answers) {
        // `lab up` names its guests ballast-lab-1..N; test sessions add a group, left alone without --all.
        const mine = (await listLabGuests()).map((g) => g.name).filter((n) => o.all || /^ballast-lab-\d+$/.test(n));
        stopped = mine.length ? await stopLabGuests({ names: mine }) : [];
      }
      const qemu = o.all ? await stopAllQemuGuests() : [];
      process.stdout.write(`stopped ${stopped.length + qemu.length} guest(s)${stopped.length + qemu.length ? ': ' + [...stopped, ...qemu].join(' ') : ''}\n`);
      if (o.keepLibvirtd) return;
      if (labLibvirtdPid() === null) {
        process.stdout.write(answers ? 'libvirtd was not started by the lab: left running\n' : 'no libvirtd running\n');
        return;
      }
      const state = answers ? await libvirtdIdle() : { idle: true, why: '' };
      if (!state.idle) {
        process.stdout.write(`libvirtd left running: it is in use (${state.why})\n`);
        return;
      }
      const pid = labLibvirtdPid();
      await stopLibvirtd();
      process.stdout.write(`stopped libvirtd PID ${pid}\n`);
    });

  lab
    .command('status')
    .description('the lab: image, libvirtd, guests with their latest memory and workload reports')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const s = await statusReport();
      if (o.json) {
        process.stdout.write(JSON.stringify(s, null, 2) + '\n');
        return;
      }
      const out: string[] = [];
      out.push(
        s.build
          ? `image: kernel ${s.build.kernelRelease}, built ${s.build.builtAt}, hash ${s.build.hash}, guest agent ${s.build.guestAgent ? 'yes' : 'no'}`
          : 'image: not built (ballast lab build)',
      );
      out.push(
        `libvirtd: ${s.libvirtd.answers ? 'answers' : 'not running'}${s.libvirtd.pid ? `, PID ${s.libvirtd.pid} started by the lab` : s.libvirtd.answers ? ', not started by the lab' : ''}`,
      );
      const all = [...s.guests, ...s.qemuGuests.map((g) => ({ ...g, state: g.running ? `running (PID ${g.pid}, QMP ${g.qmpSocket})` : 'dead' }))];
      if (all.length === 0) out.push('guests: none (ballast lab up)');
      for (const g of all) {
        const mem = g.meminfo ? `MemTotal ${fmtKiB(g.meminfo.totalKiB)}, MemFree ${fmtKiB(g.meminfo.freeKiB)}` : 'no meminfo yet';
        const rate = g.rate ? `, workload ${g.rate.op} ${Math.round(g.rate.pagesPerS)} pages/s` : '';
        out.push(`  ${g.name} [${g.kind}] ${g.state}: ${mem}${rate}${g.balloonBound ? '' : ', balloon not bound'}`);
      }
      process.stdout.write(out.join('\n') + '\n');
    });
}
