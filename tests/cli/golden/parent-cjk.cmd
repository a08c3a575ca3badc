# fixture=vm1
snapshot-parent vm1 '快照-一'
