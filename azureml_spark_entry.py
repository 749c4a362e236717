"""Azure ML Spark jobs' entry file: `azureml_spark_entry.py JOB [--after URI] ARGS` (lakerec/jobs/azureml.py).

Azure ML runs a Spark job from a file, not a module. This one sits at the repository root
because Python puts a script's own folder first on sys.path: the shipped code's `lakerec`
package then imports as it is, with nothing installed and no sys.path edit.
"""

from lakerec.jobs.azureml import main

main()
