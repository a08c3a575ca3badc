# fixture=vm1
snapshot-parent vm1 --current
