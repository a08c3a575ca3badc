# fixture=none
snapshot-list test --foo
