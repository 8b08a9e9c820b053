// Evaluates IAM requests with @cloud-copilot/iam-simulate, which applies AWS's
// documented policy logic (conditions, wildcards, resource policies) that moto
// does not. Reads a JSON list of simulations on stdin; prints a JSON list of
// results ("Allowed", "ImplicitlyDenied", "ExplicitlyDenied") in the same order.
import { runSimulation } from '@cloud-copilot/iam-simulate'

let input = ''
for await (const chunk of process.stdin) input += chunk
const results = []
for (const simulation of JSON.parse(input)) {
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    results.push({ error: response.errors })
  } else {
    results.push(response.overallResult)
  }
}
process.stdout.write(JSON.stringify(results))
