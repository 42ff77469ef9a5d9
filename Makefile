# VFIO migration protocol v2 for QEMU 7.2: the series and its checks.
#
#   make demo           live-migrate a VM between two local QEMUs (the main job)
#   make check          checkpatch, full build, the series' tests, regressions
#   make bench          VFIO migration throughput, downtime, RSS vs raw socket
#   make check-libvirt  the series through libvirt (virsh migrate, save, ...)
#   make check-realkernel  Linux's mtty driver on Debian's 6.12, nested guest
#   make check-ab       guests without a VFIO device: the series against 7.2
#   make deb            Debian's qemu with the series: x86 .debs in build/deb
#   make check-deb      install those .debs in a clean bookworm root, check them
#   make check-sanitizers  the series' tests and migration-test, ASan+UBSan
#   make fuzz           mutated streams into the destination's VFIO parser
#   make soak           one VM migrated back and forth 200 times, cancels too
#
# Developer loop: make tree, edit and commit in build/qemu, make export,
# make check, commit patches/.

SHELL := /bin/bash
S := scripts

.PHONY: all deps base base-build tree build export series-status check check-libvirt check-realkernel check-ab demo bench clean help deb check-deb check-sanitizers fuzz soak

all: build

help:
	@sed -n '3,17p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@$(S)/deps.sh

base: deps
	@$(S)/get-base.sh >/dev/null

tree: base
	@$(S)/materialize.sh

build: tree
	@$(S)/build.sh

export:
	@$(S)/export.sh

series-status:
	@$(S)/series-status.sh

check: deps
	@$(S)/check.sh

# Two private libvirt daemons; needs root and the built QEMU.
# LIBVIRT_ARGS: e.g. -v, --keep, a scenario name
check-libvirt: deps
	@$(S)/libvirt/run.sh $(LIBVIRT_ARGS)

# The series' QEMU against Linux's mtty on Debian's 6.12 kernel, in an L1
# guest under TCG (scripts/realkernel/run.sh).  REALKERNEL_ARGS: e.g.
# --only mtty-enable-migration-on,mtty-register-state
check-realkernel: deps
	@$(S)/realkernel/run.sh $(REALKERNEL_ARGS)

# Guests without a VFIO device migrate the same with the series as with
# plain 7.2, built from the tree's base tag into build/base
# (scripts/ab/run.sh).  AB_ARGS: e.g. --only idle-defaults,paused-file
check-ab: deps
	@$(S)/ab/run.sh $(AB_ARGS)

# Debian's qemu source package (scripts/get-base.sh's) with the series in
# debian/patches, built with dpkg-buildpackage -B for the x86 system
# emulators into build/deb/*.deb (scripts/deb/build.sh).  Installs the
# package's Build-Depends first.  DEB_ARGS: --cold (empty the deb ccache
# first), --no-ccache, --tree (prepare the source tree only)
deb:
	@$(S)/deb/deps.sh
	@$(S)/deb/build.sh $(DEB_ARGS)

# build/deb/*.deb installed with apt in a clean bookworm root (mmdebstrap),
# checked there in a chroot (scripts/deb/check.sh).  CHECK_DEB_ARGS: --keep
check-deb:
	@$(S)/deb/deps.sh --check
	@$(S)/deb/check.sh $(CHECK_DEB_ARGS)

# build/qemu with ASan and UBSan in build/obj-san, then the series' qtests
# and migration-test on it; any sanitizer report fails, leaks at QEMU's
# exit included (scripts/sanitizers/run.sh, reports in
# build/sanitizers/logs/last).  SANITIZERS_ARGS: e.g. --only
# /x86_64/vfio-migration/pre-copy, --timeout 1800, --build-only
check-sanitizers: deps
	@$(S)/sanitizers/run.sh $(SANITIZERS_ARGS)

# Structure-aware fuzzing of the migration destination's VFIO section parser
# (scripts/fuzz): seeds captured from the series, mutated, each played into a
# fresh destination QEMU and checked against a model; about 5 minutes.
# FUZZ_ARGS: e.g. --quick, --seconds 60, --seed 7, --self-test,
# --binary build/obj-san/qemu-system-x86_64
fuzz: build
	@python3 $(S)/fuzz/fuzz.py $(FUZZ_ARGS)

demo: build
	@python3 $(S)/demo.py $(DEMO_ARGS)

# BENCH_ARGS: e.g. --quick, --runs 5, --sizes 64M,1G, --transports unix
bench: build base-build build/rawsock
	@python3 $(S)/bench.py $(BENCH_ARGS)

# QEMU 7.2 (the base tag, with the series' TCG dirty sync fix) in
# build/obj-base, as make check-ab builds it: bench's RAM-only reference
base-build: tree
	@$(S)/ab/build-base.sh

build/rawsock: $(S)/rawsock.c
	@mkdir -p build
	$(CC) -O2 -Wall -Wextra -o $@ $<

# One VM with vfio-sim-pci (pre-copy, dirty rate, DMA) migrated back and
# forth between two local QEMUs, every 10th migration cancelled half-way
# first; device state and guest RAM checked each time, fds, RSS and
# address space bounded (scripts/soak.py).  SOAK_ARGS: e.g. --quick,
# --count 1000, -v, --binary build/obj-san/qemu-system-x86_64
soak: build
	@python3 $(S)/soak.py $(SOAK_ARGS)

clean:
	rm -rf build/obj build/obj.log build/rawsock build/obj-san build/obj-san.log build/sanitizers
