module gobuild.local/probe

go 1.21
