#!/bin/busybox sh
# ballast lab guest init (PID 1 of the initramfs). Loads the virtio balloon driver, starts the
# workload and, optionally, the QEMU guest agent, then reports the guest's own view of its
# memory on the serial console. Line format: docs/lab.md (parser: src/lab/console.ts).
#
# Kernel command line parameters read here:
#   ballast.name=NAME          guest name echoed in the boot line
#   ballast.workload=SPEC      workload schedule (see lab/workload.c); empty: no workload
#   ballast.report=S           workload rate report interval, seconds (default 2)
#   ballast.meminfo=S          meminfo report interval, seconds (default 2)
#   ballast.delay=S            wait S seconds before starting the workload (staggering)
#   ballast.qga=0              do not start the guest agent even if the image has one
#   ballast.cache=S            read the whole disk /dev/vda (page cache), S seconds after the
#                              workload starts, and again every S seconds (0: once, at once)

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin /tmp /run /var/run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
# cgroup v2, as a systemd guest has it: its root memory.reclaim is how ballast's reclaim control
# asks the guest to give back page cache (through the agent). Mounting changes no accounting.
/bin/busybox mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

uptime_s() { read up _ </proc/uptime; echo "$up"; }
say() { echo "BALLAST $*"; }

NAME=-
WORKLOAD=
REPORT=2
MEMINFO=2
QGA=1
DELAY=0
CACHE=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ballast.name=*) NAME="${arg#ballast.name=}" ;;
    ballast.workload=*) WORKLOAD="${arg#ballast.workload=}" ;;
    ballast.report=*) REPORT="${arg#ballast.report=}" ;;
    ballast.meminfo=*) MEMINFO="${arg#ballast.meminfo=}" ;;
    ballast.qga=*) QGA="${arg#ballast.qga=}" ;;
    ballast.delay=*) DELAY="${arg#ballast.delay=}" ;;
    ballast.cache=*) CACHE="${arg#ballast.cache=}" ;;
  esac
done

say "boot t=$(uptime_s) name=$NAME kernel=$(uname -r)"

# Modules in dependency order; /etc/ballast-modules (written by the build) says for each one
# whether it is a file here or built into the kernel.
while read -r mod kind; do
  case "$kind" in
    builtin) say "module t=$(uptime_s) name=$mod status=builtin" ;;
    file)
      if err=$(insmod "/lib/modules/$mod.ko" 2>&1); then
        say "module t=$(uptime_s) name=$mod status=loaded"
      else
        say "module t=$(uptime_s) name=$mod status=failed err=$(echo "$err" | tr ' ' '_')"
      fi
      ;;
  esac
done </etc/ballast-modules

# The balloon device binds asynchronously after the driver loads.
dev=
i=0
while [ $i -lt 50 ]; do
  for d in /sys/bus/virtio/drivers/virtio_balloon/virtio*; do
    [ -e "$d" ] && dev="${d##*/}"
  done
  [ -n "$dev" ] && break
  sleep 0.1
  i=$((i + 1))
done
if [ -n "$dev" ]; then say "balloon t=$(uptime_s) status=bound device=$dev"; else say "balloon t=$(uptime_s) status=absent"; fi

# The guest agent talks over the virtio-serial port named org.qemu.guest_agent.0.
# Only wait for the port when the guest has a virtio console device (virtio device id 3).
has_serial=0
for d in /sys/bus/virtio/devices/*; do
  [ -e "$d/device" ] && [ "$(cat "$d/device")" = 0x0003 ] && has_serial=1
done
if [ "$QGA" != 0 ] && [ -x /usr/sbin/qemu-ga ] && [ $has_serial = 0 ]; then
  say "qga t=$(uptime_s) status=no-device"
elif [ "$QGA" != 0 ] && [ -x /usr/sbin/qemu-ga ]; then
  port=
  i=0
  while [ $i -lt 30 ] && [ -z "$port" ]; do
    for p in /sys/class/virtio-ports/*; do
      [ -e "$p/name" ] && [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ] && port="${p##*/}"
    done
    [ -z "$port" ] && sleep 0.1
    i=$((i + 1))
  done
  if [ -n "$port" ]; then
    mkdir -p /run/qga
    (while true; do
      /usr/sbin/qemu-ga -m virtio-serial -p "/dev/$port" -t /run/qga >/dev/null 2>&1
      say "qga-exit t=$(uptime_s) status=$?"
      sleep 2
    done) &
    say "qga t=$(uptime_s) status=started port=$port"
  else
    say "qga t=$(uptime_s) status=no-port"
  fi
fi

if [ -n "$WORKLOAD" ]; then
  (sleep "$DELAY"
  while true; do
    /bin/workload "$WORKLOAD" "$REPORT"
    say "workload-exit t=$(uptime_s) status=$?"
    sleep 1
  done) &
fi

# Page cache: reads of the disk stay in the guest's cache (reclaimable, counted in MemAvailable).
if [ -n "$CACHE" ]; then
  (i=0
  while [ $i -lt 50 ] && [ ! -b /dev/vda ]; do sleep 0.1; i=$((i + 1)); done
  if [ ! -b /dev/vda ]; then say "cache t=$(uptime_s) status=no-disk"; exit 0; fi
  # The kernel drops a block device's page cache when its last opener closes it: keep it open.
  exec 3</dev/vda
  sleep "$DELAY"
  while true; do
    [ "$CACHE" != 0 ] && sleep "$CACHE"
    kib=$(($(dd if=/dev/vda of=/dev/null bs=1M 2>&1 | sed -n 's/^\([0-9]*\)+.*records in$/\1/p' | head -n 1) * 1024))
    say "cache t=$(uptime_s) status=read kib=$kib"
    [ "$CACHE" = 0 ] && while true; do sleep 3600; done
  done) &
fi

say "ready t=$(uptime_s)"

while true; do
  total=0 free=0 avail=0
  while read -r key val _; do
    case "$key" in
      MemTotal:) total=$val ;;
      MemFree:) free=$val ;;
      MemAvailable:) avail=$val ;;
    esac
  done </proc/meminfo
  say "meminfo t=$(uptime_s) total_kib=$total free_kib=$free avail_kib=$avail"
  sleep "$MEMINFO"
done
