// Loaded before the app (`node --import ./dist-sample/sample-app/telemetry.js`, as `npm start`
// does): with SAMPLE_TELEMETRY=console or =otlp it registers the OpenTelemetry SDK, exporting
// traces (HTTP requests and pg queries) and metrics (nestjs-pg-pool/otel's pool metrics among
// them) to the console or to an OTLP/HTTP collector (OTEL_EXPORTER_OTLP_ENDPOINT, default
// http://localhost:4318). Unset, it loads nothing. It must run before the app's modules load:
// the instrumentations patch `http` and `pg` as Node loads them.
import { register } from 'node:module';

const mode = process.env.SAMPLE_TELEMETRY;
if (mode) await startTelemetry(mode);

async function startTelemetry(exporterName: string): Promise<void> {
  if (exporterName !== 'console' && exporterName !== 'otlp') {
    throw new Error(`SAMPLE_TELEMETRY: "${exporterName}" is neither "console" nor "otlp"`);
  }
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  const [{ metrics }, { registerInstrumentations }, { HttpInstrumentation }, { PgInstrumentation }, traceBase, { NodeTracerProvider }, sdkMetrics] =
    await Promise.all([
      import('@opentelemetry/api'),
      import('@opentelemetry/instrumentation'),
      import('@opentelemetry/instrumentation-http'),
      import('@opentelemetry/instrumentation-pg'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/sdk-metrics'),
    ]);
  const otlp = exporterName === 'otlp';
  const spanExporter = otlp ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter() : new traceBase.ConsoleSpanExporter();
  const metricExporter = otlp ? new (await import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter() : new sdkMetrics.ConsoleMetricExporter();
  new NodeTracerProvider({ spanProcessors: [new traceBase.BatchSpanProcessor(spanExporter)] }).register();
  const exportIntervalMillis = Number(process.env.OTEL_METRIC_EXPORT_INTERVAL) || 60_000;
  metrics.setGlobalMeterProvider(
    new sdkMetrics.MeterProvider({ readers: [new sdkMetrics.PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis })] }),
  );
  registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new PgInstrumentation()] });
  console.log(`OpenTelemetry: exporting traces and metrics to ${otlp ? 'OTLP/HTTP' : 'the console'}`);
}
