# fixture=vm1
snapshot-list vm1 --from nope
