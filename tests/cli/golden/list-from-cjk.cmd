# fixture=vm1
snapshot-list vm1 --from '快照-一'
