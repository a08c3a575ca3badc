# fixture=none
snapshot-list test --from
