from proxytier_exporter.cli import main

raise SystemExit(main())
