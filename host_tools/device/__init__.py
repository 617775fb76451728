"""The device wing: the serial link, flash, monitor, enrol, the virtual and emulated boards, the fault proxy,
the demo and the monitor's plots."""
